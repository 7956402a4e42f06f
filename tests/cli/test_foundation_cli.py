"""init-ca, issue, list, inspect through the real entry point, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support import OPENSSL, Result, assert_clean_error, requires_openssl, run_grpcpki, tree

Cli = Callable[..., Result]


@pytest.fixture
def pki(cli: Cli, tmp_path: Path) -> Path:
    assert cli("init-ca", "--name", "Test CA").code == 0
    return tmp_path / "pki"


def test_version_and_python_m() -> None:
    result = run_grpcpki("--version")
    assert result.code == 0 and result.stdout.startswith("grpcpki, version ")


@pytest.mark.parametrize(
    "command",
    [["init-ca"], ["issue"], ["issue", "server"], ["issue", "client"], ["list"], ["inspect"]],
    ids=lambda c: " ".join(c),
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = run_grpcpki(*command, "--help")
    assert result.code == 0, result.output
    assert "Example" in result.stdout


def test_usage_errors_exit_2_and_name_the_flag(cli: Cli) -> None:
    result = cli("init-ca", "--key-type", "dsa")
    assert result.code == 2 and "--key-type" in result.stderr
    assert cli("issue", "server").code == 2
    assert cli("list", "--bogus").code == 2


def test_init_issue_list_inspect(cli: Cli, pki: Path) -> None:
    server = cli("issue", "server", "localhost")
    assert server.code == 0, server.output
    assert "DNS:localhost, IP:127.0.0.1, IP:::1" in server.stderr
    assert "certs/localhost/chain.pem" in server.stderr
    client = cli("issue", "client", "web", "--spiffe-id", "spiffe://example.org/ns/default/sa/web", "--json")
    assert client.code == 0, client.output
    data = json.loads(client.stdout)
    assert data["sans"] == ["URI:spiffe://example.org/ns/default/sa/web"]
    assert data["extended_key_usage"] == ["serverAuth", "clientAuth"]  # an X509-SVID: both (X509-SVID 4.4)
    assert Path(data["key_path"]).stat().st_mode & 0o777 == 0o600

    listing = json.loads(cli("list", "--json").stdout)
    assert {(r["name"], r["kind"], r["status"]) for r in listing} == {
        ("localhost", "server", "active"), ("web", "client", "active"), ("Test CA", "root", "active")
    }
    table = cli("list")
    assert "localhost\tserver\tactive\t" in table.stdout and "\t89\t" in table.stdout
    assert [r["name"] for r in json.loads(cli("list", "--kind", "client", "--json").stdout)] == ["web"]
    assert json.loads(cli("list", "--expiring", "30d", "--json").stdout) == []

    inspected = json.loads(cli("inspect", "localhost", "--json").stdout)
    assert inspected["verifies"] is True
    assert inspected["extended_key_usage"] == ["serverAuth"]
    assert inspected["validity"] == "valid"
    human = cli("inspect", "localhost")
    assert "serverAuth" in human.stdout and "✓ chain verifies" in human.stdout and "in 89 days" in human.stdout
    key = cli("inspect", str(pki / "certs/web/key.pem"), "--json")
    key_data = json.loads(key.stdout)
    assert key_data["kind"] == "private-key" and key_data["key_type"] == "ecdsa-p256"
    assert "PRIVATE" not in key.stdout


def test_intermediate_leaves_carry_their_chain(cli: Cli, tmp_path: Path) -> None:
    assert cli("init-ca", "--intermediate").code == 0
    assert cli("issue", "server", "api.example.com").code == 0
    chain = (tmp_path / "pki/certs/api.example.com/chain.pem").read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert json.loads(cli("inspect", "api.example.com", "--json").stdout)["chain_length"] == 2


@requires_openssl
def test_openssl_accepts_cli_issued_material(cli: Cli, tmp_path: Path) -> None:
    assert cli("init-ca", "--intermediate").code == 0
    assert cli("issue", "server", "localhost").code == 0
    assert cli("issue", "client", "web", "--spiffe-id", "spiffe://example.org/web").code == 0
    pki = tmp_path / "pki"
    for name, purpose in (("localhost", "sslserver"), ("web", "sslclient")):
        result = subprocess.run(
            [OPENSSL, "verify", "-purpose", purpose, "-CAfile", str(pki / "ca.crt"),
             "-untrusted", str(pki / f"certs/{name}/chain.pem"), str(pki / f"certs/{name}/cert.pem")],
            capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


BAD_SANS = [
    (["server", "api", "--dns", "bad_name.example"], "invalid label"),
    (["server", "api", "--ip", "300.1.1.1"], "not a valid IP address"),
    (["client", "web", "--spiffe-id", "spiffe://Example.org/web"], "use 'example.org'"),
    (["client", "web", "--spiffe-id", "spiffe://example.org/web/"], "has a trailing '/'"),
    (["client", "web", "--uri", "no-scheme"], "no scheme"),
    (["server", "*.com"], "invalid certificate name"),
    (["client", "web client"], "invalid certificate name"),
    (["server", "api", "--dns", "*.com"], "too broad"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SANS, ids=[" ".join(a) for a, _ in BAD_SANS])
def test_malformed_names_are_refused_and_nothing_is_written(cli: Cli, pki: Path, args: list[str], message: str) -> None:
    before = tree(pki)
    assert_clean_error(cli("issue", *args), message)
    assert tree(pki) == before


def test_issue_without_ca(cli: Cli, tmp_path: Path) -> None:
    assert_clean_error(cli("issue", "server", "localhost"), "no CA in", "grpcpki init-ca")
    assert tree(tmp_path) == []


def test_client_without_any_identity(cli: Cli, pki: Path) -> None:
    result = cli("issue", "client", "x_y")
    assert_clean_error(result, "so the certificate would have no SAN", "--spiffe-id")


def test_duplicate_name(cli: Cli, pki: Path) -> None:
    assert cli("issue", "server", "localhost").code == 0
    before = {p: p.read_bytes() for p in (pki / "certs").rglob("*.pem")}
    assert_clean_error(cli("issue", "server", "localhost"), "already exists", "grpcpki renew localhost")
    assert {p: p.read_bytes() for p in (pki / "certs").rglob("*.pem")} == before


def test_validity_past_the_ca(cli: Cli, tmp_path: Path) -> None:
    assert cli("init-ca", "--days", "30").code == 0
    before = tree(tmp_path / "pki")
    assert_clean_error(cli("issue", "server", "localhost"), "past the CA's expiry", "--days")
    assert tree(tmp_path / "pki") == before


def test_name_constraints_refuse_before_signing(cli: Cli, tmp_path: Path) -> None:
    assert cli("init-ca", "--permit-dns", ".svc.cluster.local", "--permit-uri", "spiffe://example.org").code == 0
    assert cli("issue", "server", "api.ns.svc.cluster.local").code == 0
    before = tree(tmp_path / "pki")
    assert_clean_error(cli("issue", "server", "api.example.com"), "outside the CA's permitted DNS names")
    assert_clean_error(
        cli("issue", "client", "w", "--spiffe-id", "spiffe://other.org/w"), "outside the CA's permitted URI hosts"
    )
    assert tree(tmp_path / "pki") == before


def test_ca_is_not_overwritten(cli: Cli, pki: Path) -> None:
    bundle = (pki / "ca.crt").read_bytes()
    assert_clean_error(cli("init-ca"), "a CA already exists", "--force")
    assert (pki / "ca.crt").read_bytes() == bundle


def test_encrypted_ca(cli: Cli, tmp_path: Path) -> None:
    no_pass = cli("init-ca", "--encrypt")
    assert_clean_error(no_pass, "no passphrase was given", "GRPCPKI_PASSPHRASE")
    assert tree(tmp_path) == []
    assert cli("init-ca", "--encrypt", env={"GRPCPKI_PASSPHRASE": "s3cret"}).code == 0
    key = (tmp_path / "pki/ca/g1/root.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key
    before = tree(tmp_path / "pki")
    assert_clean_error(cli("issue", "server", "localhost", env={"GRPCPKI_PASSPHRASE": "nope"}), "wrong passphrase")
    assert_clean_error(cli("issue", "server", "localhost"), "no passphrase was given")
    assert tree(tmp_path / "pki") == before
    (tmp_path / "pass.txt").write_text("s3cret\n")
    ok = cli("issue", "server", "localhost", "--passphrase-file", str(tmp_path / "pass.txt"))
    assert ok.code == 0, ok.output
    assert_clean_error(cli("issue", "server", "x.example", "--passphrase-file", str(tmp_path / "missing.txt")),
                       "cannot read passphrase file")
    # The passphrase never appears in output.
    assert "s3cret" not in ok.output


def test_inspect_errors(cli: Cli, pki: Path, tmp_path: Path) -> None:
    (tmp_path / "notpem.crt").write_text("hello world\n")
    assert_clean_error(cli("inspect", str(tmp_path / "notpem.crt")), "is not a PEM file")
    assert_clean_error(cli("inspect", str(tmp_path / "missing.pem")), "does not exist")
    assert_clean_error(cli("inspect", "ghost"), "no active certificate named 'ghost'")
    garbled = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    (tmp_path / "garbled.pem").write_text(garbled)
    assert_clean_error(cli("inspect", str(tmp_path / "garbled.pem")), "damaged certificate")


def test_inspect_a_file_without_a_pki(tmp_path: Path, cli: Cli) -> None:
    cli("init-ca")
    cli("issue", "server", "localhost")
    cert = tmp_path / "pki/certs/localhost/cert.pem"
    result = run_grpcpki("--pki", str(tmp_path / "elsewhere"), "inspect", str(cert), "--json", cwd=tmp_path)
    assert result.code == 0, result.output
    assert json.loads(result.stdout)["common_name"] == "localhost"


def test_unexpected_errors_are_one_line_unless_debugging(tmp_path: Path) -> None:
    import sqlite3

    # An inventory that claims the current schema but has no tables: nothing anticipates that.
    pki = tmp_path / "pki"
    assert run_grpcpki("--pki", str(pki), "init-ca").code == 0
    (pki / "inventory.db").unlink()
    db = sqlite3.connect(pki / "inventory.db")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    result = run_grpcpki("--pki", str(pki), "list")
    assert_clean_error(result, "unexpected error", "GRPCPKI_DEBUG=1")
    debug = run_grpcpki("--pki", str(pki), "list", env={"GRPCPKI_DEBUG": "1"})
    assert debug.code == 1 and "Traceback" in debug.stderr


def test_console_script_matches_python_m(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("grpcpki")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == run_grpcpki("--version").stdout


def test_a_ca_that_cannot_sign(cli: Cli, pki: Path) -> None:
    # Someone copied a leaf certificate and key over the CA's files.
    assert cli("issue", "server", "localhost").code == 0
    (pki / "ca/g1/root.crt").write_bytes((pki / "certs/localhost/cert.pem").read_bytes())
    (pki / "ca/g1/root.key").write_bytes((pki / "certs/localhost/key.pem").read_bytes())
    before = tree(pki)
    assert_clean_error(cli("issue", "client", "web.example"), "is not a CA certificate", "grpcpki init-ca")
    assert tree(pki) == before


def test_a_ca_key_that_is_not_a_key(cli: Cli, pki: Path) -> None:
    (pki / "ca/g1/root.key").write_text("not a key\n")
    assert_clean_error(cli("issue", "server", "localhost"), "CA key is not a PEM file")


def test_bad_input_is_reported_before_the_passphrase_is_asked_for(cli: Cli, tmp_path: Path) -> None:
    assert cli("init-ca", "--encrypt", env={"GRPCPKI_PASSPHRASE": "s3cret"}).code == 0
    assert cli("issue", "server", "localhost", env={"GRPCPKI_PASSPHRASE": "s3cret"}).code == 0
    before = tree(tmp_path / "pki")
    # No passphrase available: the real problem with the input is what the user hears about.
    assert_clean_error(cli("issue", "server", "bad_name.x"), "would have no SAN")
    assert_clean_error(cli("issue", "server", "localhost"), "already exists", "--replace")
    assert tree(tmp_path / "pki") == before
