"""Revocation: inventory status, crl.pem contents (CRL number, AKI, reasons), openssl's verdict."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from rotation_helpers import certs_in, later, make_pki

from support import OPENSSL, requires_openssl
from grpcpki.engine import GrpcpkiError, Role
from grpcpki.engine.revocation import crl_path, is_revoked, refresh_crl_if_due, revoke, revoked_serials
from grpcpki.engine.rotation import begin_rotation, renew


def _crls(path: Path) -> list[x509.CertificateRevocationList]:
    data = path.read_bytes()
    blocks = data.split(b"-----END X509 CRL-----")[:-1]
    return [x509.load_pem_x509_crl(b + b"-----END X509 CRL-----\n") for b in blocks]


def test_revoke_by_name_writes_a_crl_signed_by_the_issuing_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, intermediate=True)
    record = pki.find("web")
    result = revoke(pki, "web", reason="keyCompromise")
    assert not result.already_revoked
    row = pki.inventory.by_serial(record.serial)
    assert row is not None and row.status == "revoked" and row.revocation_reason == "keyCompromise"
    assert not record.cert_path.exists()  # type: ignore[union-attr]
    assert (pki.path / "archive" / "web" / record.serial / "cert.pem").is_file()
    (crl,) = _crls(crl_path(pki.path))
    issuing = pki.load_ca()
    assert crl.issuer == issuing.certificate.subject  # the intermediate signs, not the root
    assert crl.is_signature_valid(issuing.certificate.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    ski = issuing.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert aki == ski
    entry = crl.get_revoked_certificate_by_serial_number(int(record.serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert revoked_serials(pki.path) == {int(record.serial, 16)}
    assert is_revoked(pki.path, record.serial) and not is_revoked(pki.path, pki.find("localhost").serial)


def test_revoke_by_serial_with_colons_and_again(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    serial = pki.find("localhost").serial
    colons = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)).upper()
    assert revoke(pki, colons).record.serial == serial
    again = revoke(pki, "localhost")  # by name, now revoked: reported, CRL rewritten
    assert again.already_revoked and again.crl.number == 2
    (crl,) = _crls(crl_path(pki.path))
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    with pytest.raises(x509.ExtensionNotFound):  # RFC 5280 5.3.1: 'unspecified' is left out
        entry.extensions.get_extension_for_class(x509.CRLReason)
    pki.issue(Role.SERVER, "localhost")  # the name is free again


def test_revoking_a_ca_or_unknown_name_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    root_serial = pki.ca_records()[0].serial
    with pytest.raises(GrpcpkiError, match="revokes leaves only"):
        revoke(pki, root_serial)
    with pytest.raises(GrpcpkiError, match="no active certificate named 'nope'"):
        revoke(pki, "nope")
    with pytest.raises(GrpcpkiError, match="unknown revocation reason"):
        revoke(pki, "web", reason="because")
    assert not crl_path(pki.path).exists()


def test_revoked_serials_follows_the_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    assert revoked_serials(pki.path) == frozenset()  # no crl.pem: nothing revoked
    revoke(pki, "web")
    first = revoked_serials(pki.path)
    assert revoked_serials(pki.path) is first  # cached while the file is unchanged
    revoke(pki, "localhost")
    assert len(revoked_serials(pki.path)) == 2
    assert revoked_serials(crl_path(pki.path)) == revoked_serials(pki.path)  # a CRL file path works too


def test_crl_covers_both_generations_during_rotation(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    revoke(pki, "web")
    begin_rotation(pki)
    issuers = [c.issuer.rfc4514_string() for c in _crls(crl_path(pki.path))]
    assert issuers == ["CN=Rotation CA", "CN=Rotation CA G2"]


def test_renew_refreshes_a_crl_near_its_next_update(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    revoke(pki, "web")
    assert refresh_crl_if_due(pki) is None  # fresh: left alone
    renew(pki, now=later(25))  # 5 of 30 days left
    (crl,) = _crls(crl_path(pki.path))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def _openssl_verify(ca: Path, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, "verify", *extra, "-CAfile", str(ca), str(cert)], capture_output=True, text=True)


@requires_openssl
@pytest.mark.parametrize("intermediate", [False, True], ids=["root-only", "with-intermediate"])
def test_openssl_crl_check(tmp_path: Path, intermediate: bool) -> None:
    pki = make_pki(tmp_path, intermediate=intermediate)
    pki.issue(Role.SERVER, "other")
    kept = tmp_path / "web.pem"
    web = pki.find("web")
    kept.write_bytes(web.chain_path.read_bytes())  # type: ignore[union-attr]
    revoke(pki, "web", reason="keyCompromise")
    crl = crl_path(pki.path)
    text = subprocess.run([OPENSSL, "crl", "-in", str(crl), "-noout", "-text"], capture_output=True, text=True)  # type: ignore[list-item]
    assert text.returncode == 0 and "X509v3 CRL Number" in text.stdout and "Key Compromise" in text.stdout
    assert "X509v3 Authority Key Identifier" in text.stdout

    def check(cert_chain: Path) -> subprocess.CompletedProcess[str]:
        untrusted = tmp_path / "untrusted.pem"
        parts = certs_in(cert_chain)
        leaf = tmp_path / "leaf.pem"
        leaf.write_bytes(cert_chain.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n")
        extra = ["-crl_check", "-CRLfile", str(crl)]
        if len(parts) > 1:
            from cryptography.hazmat.primitives.serialization import Encoding

            untrusted.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in parts[1:]))
            extra += ["-untrusted", str(untrusted)]
        return _openssl_verify(pki.trust_bundle_path, leaf, *extra)

    rejected = check(kept)
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr
    accepted = check(pki.find("other").chain_path)  # type: ignore[arg-type]
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


@requires_openssl
def test_openssl_follows_the_cross_certificate(tmp_path: Path) -> None:
    """BoringSSL builds chains like OpenSSL: check the cross-signed chain the way it would."""
    pki = make_pki(tmp_path, intermediate=True, path_len=2)
    begin_rotation(pki, cross_sign=True)
    pki.issue(Role.SERVER, "fresh")
    chain = pki.find("fresh").chain_path
    assert chain is not None
    from cryptography.hazmat.primitives.serialization import Encoding

    parts = certs_in(chain)
    leaf, untrusted = tmp_path / "leaf.pem", tmp_path / "untrusted.pem"
    leaf.write_bytes(parts[0].public_bytes(Encoding.PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in parts[1:]))
    for anchor in (pki.ca_dir(1) / "root.crt", pki.ca_dir(2) / "root.crt", pki.trust_bundle_path):
        result = _openssl_verify(anchor, leaf, "-untrusted", str(untrusted))
        assert result.returncode == 0, (anchor, result.stdout, result.stderr)
