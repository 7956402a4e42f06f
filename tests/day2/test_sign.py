"""grpcpki sign CSR_FILE: the key never touches the CA; the CSR is checked like issue's input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from day2_support import grpcpki_serve
from support import Result, assert_clean_error, run_grpcpki, tree

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _csr(path: Path, key: Key, cn: str | None, sans: list[x509.GeneralName] = (), *, extras: bool = False) -> Path:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if extras:  # what a hostile or confused requester might ask for
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    path.write_bytes(builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM))
    return path


def _key_file(path: Path, key: Key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _cert(pki: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki / "certs" / name / "cert.pem").read_bytes())


def test_sign_server_csr_and_serve_with_the_requesters_key(cli: Callable[..., Result], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert cli("init-ca", "--intermediate").code == 0
    assert cli("issue", "client", "web", "--spiffe-id", "spiffe://example.org/web").code == 0
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _csr(tmp_path / "localhost.csr", key, "localhost", [x509.DNSName("localhost")], extras=True)
    result = cli("sign", str(csr), "--kind", "server", "--ip", "127.0.0.1", "--out", str(tmp_path / "out.crt"),
                 "--json")
    assert result.code == 0, result.output
    record = json.loads(result.stdout)
    assert record["name"] == "localhost" and record["key_path"] is None
    assert record["sans"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    # The key never reached the PKI; the certificate certifies the requester's key.
    assert sorted(p.name for p in (pki / "certs/localhost").iterdir()) == ["cert.pem", "chain.pem"]
    cert = _cert(pki, "localhost")
    assert cert.public_key() == key.public_key()
    # The profile decides the extensions, not the CSR: no CA:TRUE, no codeSigning.
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (tmp_path / "out.crt").read_bytes() == (pki / "certs/localhost/chain.pem").read_bytes()
    # In use: serve with the chain from the PKI and the requester's key; greet as web over mTLS.
    key_file = _key_file(tmp_path / "localhost.key", key)
    with grpcpki_serve(pki, "--cert", str(tmp_path / "out.crt"), "--key", str(key_file), "--ca", str(pki / "ca.crt")) as port:
        greeted = run_grpcpki("--pki", str(pki), "greet", "--name", "web", "--server", f"localhost:{port}", "--json")
        assert greeted.code == 0, greeted.output
    assert cli("doctor").code == 0


@pytest.mark.parametrize("key", [ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)],
                         ids=["ed25519", "rsa-2048"])
def test_sign_client_csr(cli: Callable[..., Result], tmp_path: Path, key: Key) -> None:
    assert cli("init-ca").code == 0
    csr = _csr(tmp_path / "web.csr", key, None, [x509.UniformResourceIdentifier("spiffe://example.org/web")])
    assert_clean_error(cli("sign", str(csr), "--kind", "client"), "no Common Name", "--name")
    result = cli("sign", str(csr), "--kind", "client", "--name", "web", "--json")
    assert result.code == 0, result.output
    record = json.loads(result.stdout)
    assert record["sans"] == ["URI:spiffe://example.org/web"]  # no DNS:web: the CSR names an identity
    # A SPIFFE ID makes it an X509-SVID: both usages (X509-SVID 4.4, engine/profiles.py).
    assert "clientAuth" in record["extended_key_usage"]


def test_bad_csrs_are_refused_and_write_nothing(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("init-ca", "--permit-dns", "example.com").code == 0
    before = tree(tmp_path / "pki")
    p256 = ec.generate_private_key(ec.SECP256R1())
    # Outside the CA's name constraints.
    outside = _csr(tmp_path / "evil.csr", p256, "evil.org", [x509.DNSName("evil.org")])
    assert_clean_error(cli("sign", str(outside), "--kind", "server"), "DNS:evil.org is outside")
    # A malformed name is checked like `issue --dns`.
    bad_name = _csr(tmp_path / "bad.csr", p256, "ok.example.com", [x509.DNSName("bad..example.com")])
    assert_clean_error(cli("sign", str(bad_name), "--kind", "server"), "asks for a bad name", "empty label")
    # A signature that does not match: the requester did not prove it holds the key.
    good = _csr(tmp_path / "rsa.csr", rsa.generate_private_key(65537, 2048), "api.example.com")
    der = bytearray(x509.load_pem_x509_csr(good.read_bytes()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    tampered = tmp_path / "tampered.csr"
    tampered.write_bytes(x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM))
    assert_clean_error(cli("sign", str(tampered), "--kind", "server"), "fails its own signature check")
    # Keys grpcpki does not certify.
    for curve_key, words in ((rsa.generate_private_key(65537, 1024), "rsa-1024"),
                             (ec.generate_private_key(ec.SECP521R1()), "ecdsa-p521")):
        weak = _csr(tmp_path / f"{words}.csr", curve_key, "weak.example.com")
        assert_clean_error(cli("sign", str(weak), "--kind", "server"), f"carries a {words} key")
    # Not a CSR at all, or no file.
    key_file = _key_file(tmp_path / "api.key", p256)
    assert_clean_error(cli("sign", str(key_file), "--kind", "server"), "holds a private key, not a certificate signing request")
    assert_clean_error(cli("sign", str(tmp_path / "missing.csr"), "--kind", "server"), "does not exist")
    usage = cli("sign", str(good), "--kind", "client", "--also-client")
    assert usage.code == 2 and "--also-client" in usage.stderr
    assert cli("sign", str(good), "--kind", "server").code == 0
    assert_clean_error(cli("sign", str(good), "--kind", "server"), "already exists", "--replace")
    assert tree(tmp_path / "pki") != before  # only the one good signing wrote anything
    assert {n.split("/")[1] for n in tree(tmp_path / "pki") if n.startswith("certs/")} == {"api.example.com"}


def test_renewal_needs_a_new_csr(cli: Callable[..., Result], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "localhost").code == 0
    first = _csr(tmp_path / "api.csr", ec.generate_private_key(ec.SECP256R1()), "api.example.com",
                 [x509.DNSName("api.example.com"), x509.DNSName("api")])
    assert cli("sign", str(first), "--kind", "server").code == 0
    assert_clean_error(cli("renew", "api.example.com"), "was signed from a CSR", "grpcpki sign NEW.csr")
    swept = cli("renew", "--all", "--force", "--json")
    assert swept.code == 0, swept.output
    by_name = {c["name"]: c for c in json.loads(swept.stdout)["certificates"]}
    assert by_name["localhost"]["action"] == "renewed"
    assert by_name["api.example.com"]["action"] == "skipped" and "new CSR" in by_name["api.example.com"]["reason"]
    assert not (pki / "certs/api.example.com/key.pem").exists()  # grpcpki never made a key behind its back
    # The renewal: a new CSR (new key) with --replace; the names it had are kept.
    new_key = ec.generate_private_key(ec.SECP256R1())
    second = _csr(tmp_path / "api-2.csr", new_key, "api.example.com", [x509.DNSName("api.example.com")])
    result = cli("sign", str(second), "--kind", "server", "--replace", "--json")
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    assert document["sans"] == ["DNS:api.example.com", "DNS:api"]
    assert _cert(pki, "api.example.com").public_key() == new_key.public_key()
    # Exports that need the key say why; the truststore has no key and works.
    assert_clean_error(cli("export", "api.example.com", "--format", "pem"), "signed from a CSR")
    trust = cli("export", "api.example.com", "--format", "truststore", "--out", str(tmp_path / "t.p12"),
                env={"GRPCPKI_EXPORT_PASSWORD": "pw"})
    assert trust.code == 0, trust.output
