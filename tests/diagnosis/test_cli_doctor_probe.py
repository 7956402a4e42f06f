"""`grpcpki doctor` and `grpcpki probe` as a user runs them: exit codes, one-line errors, usage
errors naming the flag, JSON on stdout, status on stderr, a whole PKI, a live server."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from diagnosis_support import free_port, start_servers
from support import OPENSSL, Result, assert_clean_error, requires_openssl

from grpcpki.engine import Pki, Role


def ids(result: Result) -> dict[str, str]:
    data = json.loads(result.stdout)
    items = data.get("checked", [data])
    return {f["id"]: f["severity"] for item in items for f in item["findings"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI made in-process, copied for each test (the inventory stores relative paths)."""
    path = tmp_path_factory.mktemp("template") / "pki"
    made = Pki.init(path, name="Doc CA", intermediate=True)
    made.issue(Role.SERVER, "localhost")
    made.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    return path


@pytest.fixture
def pki(cli: Callable[..., Result], template: Path, tmp_path: Path) -> Callable[..., Result]:
    """`cli` over a copy of the template PKI: server localhost, client web, an intermediate CA."""
    shutil.copytree(template, tmp_path / "pki")
    return cli


@pytest.mark.parametrize("command", ["doctor", "probe"])
def test_help_has_examples(cli: Callable[..., Result], command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0 and "Examples:" in result.stdout and f"grpcpki {command}" in result.stdout


def test_whole_pki_is_clean_and_covers_leaves_cas_and_bundle(pki: Callable[..., Result]) -> None:
    human, data = pki("doctor"), pki("doctor", "--json")
    assert human.code == 0 and data.code == 0, human.output
    assert "server certificate localhost: no problems (clients dialing localhost, 127.0.0.1, ::1 accept it)" in human.stdout
    assert "no problems found" in human.stderr  # the verdict is status: stderr
    report = json.loads(data.stdout)
    assert report["ok"] and report["errors"] == 0
    kinds = [item["kind"] for item in report["checked"]]
    assert kinds == ["server", "client", "root", "intermediate", "trust-bundle"]
    assert data.stderr == ""


def test_encrypted_ca_key_is_info_and_passphrase_is_checked_when_given(cli: Callable[..., Result], tmp_path: Path) -> None:
    env = {"GRPCPKI_PASSPHRASE": "right horse"}
    assert cli("init-ca", "--name", "Enc CA", "--encrypt", env=env).code == 0
    quiet = cli("doctor", "--json")
    assert quiet.code == 0 and ids(quiet) == {"key-encrypted": "info"}
    wrong = cli("doctor", "--json", env={"GRPCPKI_PASSPHRASE": "wrong"})
    assert wrong.code == 1 and ids(wrong) == {"key-wrong-passphrase": "error"}
    right = cli("doctor", "--json", env=env)
    assert right.code == 0 and ids(right) == {}


@requires_openssl
def test_a_ca_key_from_older_tools_is_a_kdf_warning_whose_fix_works(cli: Callable[..., Result], tmp_path: Path) -> None:
    """A CA key re-encrypted by openssl the way older recipes do: `-traditional` (Proc-Type:
    4,ENCRYPTED, one MD5 round) and `pkey -aes256` (PBKDF2 with OpenSSL's default 2,048
    iterations). Doctor warns, and its fix, run as printed, makes the key strong again."""
    env = {"GRPCPKI_PASSPHRASE": "right horse"}
    assert cli("init-ca", "--name", "Old CA", "--encrypt", env=env).code == 0
    key = tmp_path / "pki" / "ca" / "g1" / "root.key"
    for extra, described in ((["-traditional"], "OpenSSL legacy (MD5, 1 round)"), ([], "PBKDF2-HMAC-SHA256, 2,048 iterations")):
        weak = tmp_path / "weak.key"
        subprocess.run([str(OPENSSL), "pkey", "-in", str(key), "-passin", "pass:right horse", *extra, "-aes256",
                        "-passout", "pass:right horse", "-out", str(weak)], check=True, capture_output=True)
        weak.chmod(0o600)
        weak.replace(key)
        report = cli("doctor", "--json", env=env)
        assert report.code == 0 and ids(report) == {"key-weak-kdf": "warning"}, report.output
        [finding] = [f for item in json.loads(report.stdout)["checked"] for f in item["findings"]]
        assert described in finding["message"] and str(key) in finding["message"]
    assert finding["fix"] == f"grpcpki --pki {tmp_path / 'pki'} ca reencrypt"
    fixed = cli(*shlex.split(finding["fix"])[1:], env=env)
    assert fixed.code == 0, fixed.output
    assert ids(cli("doctor", "--json", env=env)) == {}
    assert b"Proc-Type" not in key.read_bytes() and cli("issue", "server", "after", env=env).code == 0


def test_problems_in_a_pki_exit_1_with_fixes(pki: Callable[..., Result], tmp_path: Path) -> None:
    certs = tmp_path / "pki" / "certs"
    (certs / "web" / "key.pem").chmod(0o644)  # a warning: still exit 0
    warn = pki("doctor")
    assert warn.code == 0 and "chmod 600" in warn.stdout and "no errors (1 warning)" in warn.stderr
    # Someone copied the client certificate over the server's: the names it was issued for are gone.
    shutil.copy(certs / "web" / "chain.pem", certs / "localhost" / "chain.pem")
    broken = pki("doctor", "--json")
    assert broken.code == 1
    found = ids(broken)
    # (web is an X509-SVID, so it carries serverAuth too: no wrong-eku, but not localhost's names.)
    assert found["name-mismatch"] == "error" and found["key-mismatch"] == "error"


def test_doctor_name_and_host(pki: Callable[..., Result]) -> None:
    ok = pki("doctor", "localhost", "--host", "127.0.0.1")
    assert ok.code == 0, ok.output
    wrong = pki("doctor", "localhost", "--host", "api.internal")
    assert wrong.code == 1
    assert "clients dialing api.internal look for a DNS SAN api.internal" in " ".join(wrong.stdout.split())
    assert "name-mismatch" in wrong.stdout


def test_doctor_files_infer_the_role_and_use_the_pki_bundle(pki: Callable[..., Result], tmp_path: Path) -> None:
    leaf = tmp_path / "pki" / "certs" / "localhost"
    result = pki("doctor", "--cert", str(leaf / "cert.pem"), "--key", str(leaf / "key.pem"))
    assert result.code == 1
    assert "as a server certificate (from its extended key usage)" in result.stderr
    assert "this PKI's trust bundle" in result.stderr
    assert "missing-intermediate" in result.stdout and "Doc CA Issuing CA" in result.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["doctor", "localhost", "--cert", "x.pem"], "--cert"),
        (["doctor", "localhost", "--role", "server"], "--role"),
        (["doctor", "--key", "k.pem"], "--key"),
        (["doctor", "--cert", "c.pem", "--role", "client", "--host", "h"], "--host"),
        (["doctor", "--role", "server"], "--role"),
        (["doctor", "web", "--host", "localhost"], "--host"),
        (["probe", "localhost"], "HOST:PORT"),
        (["probe", "localhost:99999"], "HOST:PORT"),
        (["probe", "localhost:1", "--name", "web", "--cert", "c.pem"], "--cert"),
        (["probe", "localhost:1", "--cert", "c.pem"], "--cert"),
    ],
)
def test_usage_errors_exit_2_and_name_the_flag(pki: Callable[..., Result], args: list[str], flag: str) -> None:
    result = pki(*args)
    assert_clean_error(result, flag, code=2)


def test_expected_errors_are_one_line(cli: Callable[..., Result], pki: Callable[..., Result], tmp_path: Path) -> None:
    assert_clean_error(pki("doctor", "nope"), "no active certificate named 'nope'", "known names: localhost, web")
    assert_clean_error(pki("probe", "localhost:1", "--ca", str(tmp_path / "missing.crt")), "cannot read --ca")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(cli("--pki", str(empty), "doctor"), "no CA in", "grpcpki init-ca")


def test_probe_a_pki_server_with_a_client_from_the_pki(pki: Callable[..., Result], tmp_path: Path) -> None:
    servers = start_servers({"pki": ["--pki", str(tmp_path / "pki"), "--name", "localhost"]})
    try:
        port = servers["pki"].port
        human = pki("probe", f"localhost:{port}", "--name", "web")
        data = pki("probe", f"127.0.0.1:{port}", "--name", "web", "--json")
        anonymous = pki("probe", f"localhost:{port}")
    finally:
        servers["pki"].stop()
    assert human.code == 0, human.output
    text = " ".join(human.stdout.split())
    assert "TLSv1.3" in text and "ALPN h2" in text and "required (mTLS" in text
    assert "✓ chain verifies for 'localhost'" in text and "the server accepted" in text
    assert "CN=localhost" in text and "CN=Doc CA Issuing CA (CA)" in text and "DNS:localhost, IP:127.0.0.1" in text
    assert "can connect" in human.stderr
    report = json.loads(data.stdout)
    assert report["ok"] and report["mutual_ok"] and report["client_cert_required"] and report["sni"] is None
    assert report["ca"].endswith(os.path.join("pki", "ca.crt"))
    assert anonymous.code == 0 and "requires a client certificate" in anonymous.stderr


def test_probe_closed_port(cli: Callable[..., Result]) -> None:
    port = free_port()
    result = cli("probe", f"127.0.0.1:{port}", "--json")
    assert result.code == 1
    assert json.loads(result.stdout)["findings"][0]["id"] == "connection-refused"


def test_doctor_reports_a_revoked_certificate_from_the_pki_crl_or_crl(pki: Callable[..., Result], tmp_path: Path) -> None:
    # Someone still deploys a copy of web's certificate after `grpcpki revoke web`.
    copy = tmp_path / "web-copy.pem"
    copy.write_bytes((tmp_path / "pki" / "certs" / "web" / "chain.pem").read_bytes())
    before = pki("doctor", "--cert", str(copy), "--json")
    assert before.code == 0 and "revoked" not in ids(before), before.output
    assert pki("revoke", "web").code == 0
    # The PKI's own crl.pem is read by default.
    after = pki("doctor", "--cert", str(copy), "--json")
    assert after.code == 1 and ids(after)["revoked"] == "error", after.output
    [finding] = [f for item in json.loads(after.stdout)["checked"] for f in item["findings"] if f["id"] == "revoked"]
    assert "is revoked" in finding["message"] and "crl.pem" in finding["message"]
    # A revoked certificate's name is free again: the fix issues a new one, nothing is replaced.
    assert "`grpcpki issue " in finding["fix"] and " web --spiffe-id spiffe://example.org/web`" in finding["fix"], finding
    assert "--replace" not in finding["fix"]
    # --crl FILE: the same CRL given explicitly (and DER works as well as PEM).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = tmp_path / "web.crl"
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / "crl.pem").read_bytes())
    der.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    explicit = pki("doctor", "--cert", str(copy), "--ca", str(tmp_path / "pki" / "ca.crt"), "--crl", str(der), "--json")
    assert explicit.code == 1 and ids(explicit)["revoked"] == "error", explicit.output
    missing = pki("doctor", "--cert", str(copy), "--crl", str(tmp_path / "nope.crl"))
    assert missing.code == 2 and "--crl" in missing.stderr and "Traceback" not in missing.output
