"""The doctor on material other tools make (mkcert, cfssl, easy-rsa), generated in the shapes they
use (other_tools.py), through the real `grpcpki doctor`, and checked against real stacks: what
they accept must not be a doctor error, what the doctor calls an error must fail somewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import other_tools
from stacks import grpcio_call, need_openssl, openssl_verify
from support import run_grpcpki


def doctor(tmp: Path, *args: str) -> tuple[int, list[dict[str, str]], str]:
    """`grpcpki doctor ARGS --json` outside any PKI: (exit code, findings, the human output)."""
    env = {"GRPCPKI_HOME": str(tmp / "no-pki")}
    data = run_grpcpki("doctor", *args, "--json", env=env)
    human = run_grpcpki("doctor", *args, env=env)
    assert "Traceback" not in data.output + human.output
    findings = [f for item in json.loads(data.stdout)["checked"] for f in item["findings"]]
    return data.code, findings, human.output


def _errors(findings: list[dict[str, str]]) -> list[dict[str, str]]:
    return [f for f in findings if f["severity"] == "error"]


def test_mkcert_client_certificate_is_a_client(tmp_path: Path) -> None:
    # `mkcert -client spiffe://example.org/web`: both EKUs, no DNS/IP SAN, no CN.
    _, client = other_tools.mkcert(tmp_path)
    code, findings, human = doctor(tmp_path, "--cert", str(client.cert), "--key", str(client.key), "--ca", str(client.ca))
    assert code == 0 and not _errors(findings), findings
    assert "as a client certificate" in human, human
    # Real stacks agree: grpcio calls with it as the client certificate of an mTLS connection.
    server, _ = other_tools.mkcert(tmp_path / "same-root")
    result, seen = grpcio_call(
        server.cert.read_bytes(), server.key.read_bytes(), server.ca.read_bytes(),
    )
    assert result == "OK", result
    result, seen = grpcio_call(
        server.cert.read_bytes(), server.key.read_bytes(), server.ca.read_bytes(),
        server_trust=server.ca.read_bytes(),
        client_chain=(tmp_path / "same-root" / "web-client.pem").read_bytes(),
        client_key=(tmp_path / "same-root" / "web-client-key.pem").read_bytes(),
    )
    assert result == "OK" and seen["peer_spiffe_id"] == ["spiffe://example.org/web"], (result, seen)


def test_mkcert_server_certificate_is_clean(tmp_path: Path) -> None:
    server, _ = other_tools.mkcert(tmp_path)
    code, findings, _ = doctor(tmp_path, "--cert", str(server.cert), "--key", str(server.key), "--ca", str(server.ca),
                               "--host", "localhost")
    assert code == 0 and findings == [], findings


def test_mkcert_ecdsa_keyencipherment_is_a_warning(tmp_path: Path) -> None:
    server, _ = other_tools.mkcert(tmp_path, ecdsa=True)
    code, findings, _ = doctor(tmp_path, "--cert", str(server.cert), "--key", str(server.key), "--ca", str(server.ca))
    assert code == 0, findings
    assert [(f["id"], f["severity"]) for f in findings] == [("key-usage-ecdsa-encipherment", "warning")], findings
    assert "RFC 5480" in findings[0]["message"]
    assert grpcio_call(server.cert.read_bytes(), server.key.read_bytes(), server.ca.read_bytes())[0] == "OK"


def test_easyrsa_leaves_get_a_warning_about_the_ca_not_an_error(tmp_path: Path) -> None:
    need_openssl()  # easy-rsa is a shell wrapper around the openssl CLI
    server, client = other_tools.easyrsa(tmp_path)
    for leaf in (server, client):
        code, findings, human = doctor(tmp_path, "--cert", str(leaf.cert), "--key", str(leaf.key), "--ca", str(leaf.ca))
        assert code == 0 and not _errors(findings), findings
        assert [(f["id"], f["severity"]) for f in findings] == [("ca-basic-constraints-not-critical", "warning")]
        assert "CN=Easy-RSA CA" in findings[0]["message"]
    # grpcio (both directions of mTLS) and OpenSSL accept easy-rsa's material.
    result, seen = grpcio_call(
        server.cert.read_bytes(), server.key.read_bytes(), server.ca.read_bytes(),
        server_trust=client.ca.read_bytes(), client_chain=client.cert.read_bytes(), client_key=client.key.read_bytes(),
    )
    assert result == "OK" and seen.get("peer_dns") == ["web"], (result, seen)
    assert openssl_verify(server.ca.read_bytes(), server.cert.read_bytes()) == "OK"


def test_cfssl_spiffe_id_in_hosts_is_named(tmp_path: Path) -> None:
    leaf = other_tools.cfssl(tmp_path, ["localhost", "spiffe://example.org/api"])
    code, findings, human = doctor(tmp_path, "--cert", str(leaf.cert), "--key", str(leaf.key), "--ca", str(leaf.ca))
    assert code == 1
    ids = {(f["id"], f["severity"]) for f in findings}
    assert ("spiffe-id-as-dns", "error") in ids and ("key-usage-ecdsa-encipherment", "warning") in ids, findings
    [as_dns] = [f for f in findings if f["id"] == "spiffe-id-as-dns"]
    assert "must be a URI SAN" in as_dns["message"] and "X509-SVID 2" in as_dns["message"]
    # The fix writes it as a URI SAN; it is a plain `issue` (not the inventory's certificate: no --replace).
    assert as_dns["fix"] == "grpcpki issue server localhost --dns localhost --spiffe-id spiffe://example.org/api"


def test_cfssl_without_spiffe_is_clean_but_for_the_ecdsa_warning(tmp_path: Path) -> None:
    leaf = other_tools.cfssl(tmp_path, ["localhost", "127.0.0.1"])
    code, findings, _ = doctor(tmp_path, "--cert", str(leaf.cert), "--key", str(leaf.key), "--ca", str(leaf.ca),
                               "--host", "127.0.0.1")
    assert code == 0 and [f["id"] for f in findings] == ["key-usage-ecdsa-encipherment"], findings


def test_fixes_name_a_certificate_without_a_cn_by_its_other_names(tmp_path: Path) -> None:
    from cryptography import x509

    from grpcpki.diagnosis.fixes import name_for

    server, client = other_tools.mkcert(tmp_path)
    # mkcert leaves have no CN: the suggested name comes from the DNS SAN, or the SPIFFE ID's last segment.
    assert name_for(x509.load_pem_x509_certificate(server.cert.read_bytes())) == "localhost"
    assert name_for(x509.load_pem_x509_certificate(client.cert.read_bytes())) == "web"
