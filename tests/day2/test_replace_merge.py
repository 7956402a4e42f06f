"""issue --replace keeps the names a certificate has and adds those given; --remove-san takes one off."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from support import Result, assert_clean_error, tree


def _cert_sans(pki: Path, name: str) -> list[str]:
    cert = x509.load_pem_x509_certificate((pki / "certs" / name / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [f"DNS:{v}" for v in san.get_values_for_type(x509.DNSName)] + [
        f"IP:{v}" for v in san.get_values_for_type(x509.IPAddress)
    ]


def test_replace_keeps_existing_names_and_shows_the_change(cli: Callable[..., Result], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "api.example.com", "--dns", "api", "--ip", "10.0.0.7").code == 0
    # The report: this used to drop DNS:api and IP:10.0.0.7.
    result = cli("issue", "server", "api.example.com", "--ip", "10.0.0.8", "--replace")
    assert result.code == 0, result.output
    assert _cert_sans(pki, "api.example.com") == ["DNS:api.example.com", "DNS:api", "IP:10.0.0.7", "IP:10.0.0.8"]
    assert "names before:      DNS:api.example.com, DNS:api, IP:10.0.0.7" in result.stderr
    assert "added: IP:10.0.0.8; removed: -" in result.stderr
    # Removing is explicit, and the JSON carries before/after.
    removed = cli("issue", "server", "api.example.com", "--replace", "--remove-san", "IP:10.0.0.7",
                  "--remove-san", "dns:API", "--json")
    assert removed.code == 0, removed.output
    change = json.loads(removed.stdout)["san_change"]
    assert change == {
        "before": ["DNS:api.example.com", "DNS:api", "IP:10.0.0.7", "IP:10.0.0.8"],
        "after": ["DNS:api.example.com", "IP:10.0.0.8"],
        "added": [],
        "removed": ["DNS:api", "IP:10.0.0.7"],
    }
    assert _cert_sans(pki, "api.example.com") == ["DNS:api.example.com", "IP:10.0.0.8"]
    history = json.loads(cli("list", "--all", "--json").stdout)
    assert sorted(r["status"] for r in history if r["name"] == "api.example.com") == ["active", "superseded", "superseded"]


def test_replace_keeps_extra_usage(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "peer", "--spiffe-id", "spiffe://example.org/peer", "--also-client").code == 0
    result = cli("issue", "server", "peer", "--dns", "peer.internal", "--replace", "--json")
    record = json.loads(result.stdout)
    assert record["extended_key_usage"] == ["serverAuth", "clientAuth"]
    assert record["sans"] == ["DNS:peer", "DNS:peer.internal", "URI:spiffe://example.org/peer"]


def test_bad_removals_and_kind_changes_are_refused_and_write_nothing(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "api.example.com", "--ip", "10.0.0.7").code == 0
    before = tree(tmp_path / "pki")
    assert_clean_error(cli("issue", "server", "api.example.com", "--replace", "--remove-san", "IP:10.9.9.9"),
                       "IP:10.9.9.9 is not on 'api.example.com'")
    assert_clean_error(
        cli("issue", "server", "api.example.com", "--replace", "--remove-san", "DNS:api.example.com",
            "--remove-san", "IP:10.0.0.7"),
        "would leave 'api.example.com' with no SAN",
    )
    assert_clean_error(cli("issue", "server", "nope.example.com", "--replace", "--remove-san", "DNS:x"),
                       "--remove-san takes names off an existing certificate")
    usage = cli("issue", "server", "api.example.com", "--remove-san", "IP:10.0.0.7")
    assert usage.code == 2 and "--replace" in usage.stderr
    usage = cli("issue", "server", "api.example.com", "--replace", "--remove-san", "bad..name")
    assert usage.code == 2 and "--remove-san" in usage.stderr
    assert tree(tmp_path / "pki") == before


def test_replace_never_repurposes_the_other_kind(cli: Callable[..., Result], tmp_path: Path) -> None:
    """`issue client NAME --replace` (as a careless fix might suggest) makes a client certificate
    beside the server one: names are unique per kind, so the server in use is untouched."""
    pki = tmp_path / "pki"
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "localhost").code == 0
    server_cert = (pki / "certs/localhost/cert.pem").read_bytes()
    result = cli("issue", "client", "localhost", "--replace", "--json")
    assert result.code == 0, result.output
    assert "san_change" not in json.loads(result.stdout)  # nothing was replaced
    assert (pki / "certs/localhost/cert.pem").read_bytes() == server_cert
    kinds = {r["kind"] for r in json.loads(cli("list", "--json").stdout) if r["name"] == "localhost"}
    assert kinds == {"server", "client"}
