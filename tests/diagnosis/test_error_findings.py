"""Every error-level finding of the doctor is one a real gRPC stack fails on.

Each case makes broken material, runs the doctor on it (the finding must be an error), then runs
a real stack on the very same bytes and shows it fail: grpcio in process (BoringSSL: server start,
handshake, or the peer identity a SPIFFE-authorising server reads), or the openssl CLI (OpenSSL 3
at the system's default security level, as OpenSSL-based stacks load it). What no stack refuses is
a warning (docs/failures.md#chain-rejected); the last test keeps this list complete.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import badcerts as b
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from stacks import grpcio_call, openssl_serves, openssl_verify

from grpcpki.diagnosis.doctor import check_key_file, check_material, check_trust_bundle
from grpcpki.diagnosis.findings import Finding, Severity

REPO = Path(__file__).resolve().parents[2]
NOW = b.now


@dataclass(frozen=True)
class World:
    root: b.Material
    server: b.Material
    client: b.Material


@pytest.fixture(scope="module")
def world() -> World:
    root = b.make_ca("Proof CA")
    return World(
        root,
        b.make_leaf(root),
        b.make_leaf(root, "web", sans=["URI:spiffe://example.org/web"], eku=[b.CLIENT_AUTH, b.SERVER_AUTH]),
    )


def test_control_good_material_works_in_every_stack(world: World) -> None:
    result, seen = grpcio_call(
        world.server.cert_pem, world.server.key_pem, world.root.cert_pem,
        server_trust=world.root.cert_pem, client_chain=world.client.cert_pem, client_key=world.client.key_pem,
    )
    assert result == "OK" and seen["peer_spiffe_id"] == ["spiffe://example.org/web"]
    assert grpcio_call(world.server.cert_pem, world.server.key_pem, world.root.cert_pem, target="127.0.0.1")[0] == "OK"
    assert openssl_serves(world.server.cert_pem, world.server.key_pem) == "OK"
    assert openssl_verify(world.root.cert_pem, world.server.cert_pem) == "OK"


# A case: (finding id, what it is, build(world) -> (doctor findings, what the real stack did)).
Proof = tuple[list[Finding], str]


def _server_call(w: World, leaf: b.Material, chain: bytes | None = None, **kwargs: object) -> str:
    return grpcio_call(leaf.cert_pem if chain is None else chain, leaf.key_pem, w.root.cert_pem, **kwargs)[0]  # type: ignore[arg-type]


def _file(tmp: Path, name: str, data: bytes | None) -> str:
    path = tmp / name
    if data is not None:
        path.write_bytes(data)
    return str(path)


def _missing(w: World) -> Proof:
    tmp = Path(tempfile.mkdtemp())
    # What gRPC gets from a file that is not there: nothing.
    return check_material(_file(tmp, "gone.pem", None), role="server"), _server_call(w, w.server, chain=b"")


def _directory(w: World) -> Proof:
    tmp = Path(tempfile.mkdtemp())
    return check_material(str(tmp), role="server"), _server_call(w, w.server, chain=b"")


def _der(w: World) -> Proof:
    der = w.server.cert.public_bytes(serialization.Encoding.DER)
    return check_material(der, role="server"), _server_call(w, w.server, chain=der)


def _key_as_cert(w: World) -> Proof:
    return check_material(w.server.key_pem, role="server"), _server_call(w, w.server, chain=w.server.key_pem)


def _encrypted(w: World) -> Proof:
    encrypted = b.key_pem(w.server.key, b"s3cret")
    stack = grpcio_call(w.server.cert_pem, encrypted, w.root.cert_pem)[0]
    return check_key_file(encrypted), stack


def _wrong_passphrase(w: World) -> Proof:
    encrypted = b.key_pem(w.server.key, b"s3cret")
    # gRPC has no passphrase at all: the key it is given stays encrypted.
    return check_key_file(encrypted, passphrase=b"nope"), grpcio_call(w.server.cert_pem, encrypted, w.root.cert_pem)[0]


def _mismatch(w: World) -> Proof:
    other = b.make_leaf(w.root)
    return (
        check_material(w.server.cert_pem, other.key_pem, role="server"),
        grpcio_call(w.server.cert_pem, other.key_pem, w.root.cert_pem)[0],
    )


def _expired(w: World) -> Proof:
    leaf = b.make_leaf(w.root, not_before=NOW() - dt.timedelta(days=30), not_after=NOW() - dt.timedelta(days=1))
    return check_material(leaf.cert_pem, role="server"), _server_call(w, leaf)


def _future(w: World) -> Proof:
    leaf = b.make_leaf(w.root, not_before=NOW() + dt.timedelta(days=1))
    return check_material(leaf.cert_pem, role="server"), _server_call(w, leaf)


def _revoked(w: World) -> Proof:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(w.root.cert.subject)
        .last_update(NOW() - dt.timedelta(hours=1))
        .next_update(NOW() + dt.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(w.server.cert.serial_number).revocation_date(NOW()).build()
        )
        .sign(w.root.key, hashes.SHA256())  # type: ignore[arg-type]
        .public_bytes(serialization.Encoding.PEM)
    )
    return (
        check_material(w.server.cert_pem, role="server", crl=crl),
        openssl_verify(w.root.cert_pem, w.server.cert_pem, crl=crl),
    )


def _cn_only(w: World) -> Proof:
    leaf = b.make_leaf(w.root, "localhost", sans=None)
    # grpcio falls back to the CN for a DNS target only; dialed by address it refuses (Go always does).
    return check_material(leaf.cert_pem, role="server"), _server_call(w, leaf, target="127.0.0.1")


def _name_mismatch(w: World) -> Proof:
    leaf = b.make_leaf(w.root, sans=["DNS:localhost"])
    return check_material(leaf.cert_pem, role="server", host="127.0.0.1"), _server_call(w, leaf, target="127.0.0.1")


def _spiffe_identity(w: World, sans: list[str]) -> Proof:
    client = b.make_leaf(w.root, "web", sans=sans, eku=[b.CLIENT_AUTH, b.SERVER_AUTH])
    result, seen = grpcio_call(
        w.server.cert_pem, w.server.key_pem, w.root.cert_pem,
        server_trust=w.root.cert_pem, client_chain=client.cert_pem, client_key=client.key_pem,
    )
    assert result == "OK", result
    # The handshake works, but a server that authorises on SPIFFE IDs sees none.
    stack = "OK" if "peer_spiffe_id" in seen else f"grpcio reports no peer_spiffe_id (it saw {seen})"
    return check_material(client.cert_pem, role="client"), stack


def _wrong_eku(w: World) -> Proof:
    leaf = b.make_leaf(w.root, eku=[b.CLIENT_AUTH])
    return check_material(leaf.cert_pem, role="server"), _server_call(w, leaf)


def _no_digital_signature(w: World) -> Proof:
    leaf = b.make_leaf(w.root, key_kind="rsa2048", key_usage=b.key_usage(key_encipherment=True))
    return check_material(leaf.cert_pem, role="server"), _server_call(w, leaf)


def _weak_rsa(w: World) -> Proof:
    leaf = b.make_leaf(w.root, key_kind="rsa1024")
    return check_material(leaf.cert_pem, role="server"), openssl_serves(leaf.cert_pem, leaf.key_pem)


def _weak_curve(w: World) -> Proof:
    leaf = b.make_leaf(w.root, key_kind="ec192")
    return check_material(leaf.cert_pem, role="server"), _server_call(w, leaf)


def _sha1(w: World) -> Proof:
    rsa_root = b.make_ca("RSA CA", key_kind="rsa2048")
    leaf = b.make_leaf(rsa_root, signature_hash="sha1")
    return check_material(leaf.cert_pem, role="server"), openssl_serves(leaf.cert_pem, leaf.key_pem)


def _issuer_not_ca(w: World) -> Proof:
    fake = b.make_leaf(w.root, "fake-intermediate")
    leaf = b.make_leaf(fake)
    chain = b.pem(leaf, fake)
    return check_material(chain, role="server", trust=w.root.cert_pem), _server_call(w, leaf, chain=chain)


def _missing_intermediate(w: World) -> Proof:
    inter = b.make_ca("Issuing CA", issuer=w.root)
    leaf = b.make_leaf(inter)
    findings = check_material(leaf.cert_pem, role="server", trust=w.root.cert_pem, known_cas=[inter.cert_pem])
    return findings, _server_call(w, leaf)


def _chain_order(w: World) -> Proof:
    inter = b.make_ca("Issuing CA", issuer=w.root)
    leaf = b.make_leaf(inter)
    chain = b.pem(inter, leaf)
    return check_material(chain, leaf.key_pem, role="server", trust=w.root.cert_pem), _server_call(w, leaf, chain=chain)


def _untrusted(w: World) -> Proof:
    other = b.make_ca("Other CA")
    leaf = b.make_leaf(other)
    return check_material(leaf.cert_pem, role="server", trust=w.root.cert_pem), _server_call(w, leaf)


def _path_length(w: World) -> Proof:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    limited = b.make_ca("Limited CA", issuer=w.root)
    limited_cert = (
        x509.CertificateBuilder().subject_name(limited.cert.subject).issuer_name(w.root.cert.subject)
        .public_key(limited.key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW() - dt.timedelta(days=1)).not_valid_after(NOW() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(b.key_usage(key_cert_sign=True, crl_sign=True, digital_signature=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(limited.key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(w.root.key.public_key()), critical=False)
        .sign(w.root.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    sub_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Too Deep CA")])
    sub_cert = (
        x509.CertificateBuilder().subject_name(sub_name).issuer_name(limited.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW() - dt.timedelta(days=1)).not_valid_after(NOW() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(b.key_usage(key_cert_sign=True, crl_sign=True, digital_signature=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(limited.key.public_key()), critical=False)
        .sign(limited.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    sub = b.Material(sub_cert, key)
    leaf = b.make_leaf(sub)
    chain = leaf.cert_pem + sub.cert_pem + b.Material(limited_cert, limited.key).cert_pem
    return check_material(chain, role="server", trust=w.root.cert_pem, host="localhost"), _server_call(w, leaf, chain=chain)


def _empty_bundle(w: World) -> Proof:
    return check_trust_bundle(b""), grpcio_call(w.server.cert_pem, w.server.key_pem, b"\n")[0]


def _expired_anchor(w: World) -> Proof:
    old = b.make_ca("Old CA", not_before=NOW() - dt.timedelta(days=60), not_after=NOW() - dt.timedelta(days=1))
    leaf = b.make_leaf(old, not_before=NOW() - dt.timedelta(days=50), not_after=NOW() + dt.timedelta(days=30))
    return check_trust_bundle(old.cert_pem), grpcio_call(leaf.cert_pem, leaf.key_pem, old.cert_pem)[0]


CASES: list[tuple[str, str, Callable[[World], Proof]]] = [
    ("file-missing", "no file: gRPC gets no certificate", _missing),
    ("file-unreadable", "a directory: gRPC gets no certificate", _directory),
    ("not-pem", "a DER certificate", _der),
    ("wrong-pem-type", "a key where the certificate belongs", _key_as_cert),
    ("key-encrypted", "an encrypted key (gRPC has no passphrase callback)", _encrypted),
    ("key-wrong-passphrase", "an encrypted key with the wrong passphrase", _wrong_passphrase),
    ("key-mismatch", "the key of another certificate", _mismatch),
    ("expired", "an expired server certificate", _expired),
    ("not-yet-valid", "a server certificate valid from tomorrow", _future),
    ("revoked", "a certificate its issuer's CRL lists (openssl -crl_check)", _revoked),
    ("cn-only", "a CN-only server certificate dialed by address", _cn_only),
    ("name-mismatch", "dial 127.0.0.1, SAN only DNS:localhost", _name_mismatch),
    ("spiffe-id-as-dns", "a SPIFFE ID as a DNS SAN (cfssl)",
     lambda w: _spiffe_identity(w, ["DNS:spiffe://example.org/web"])),
    ("spiffe-svid", "two URI SANs (X509-SVID 2)",
     lambda w: _spiffe_identity(w, ["URI:spiffe://example.org/web", "URI:spiffe://example.org/db"])),
    ("spiffe-svid", "a SPIFFE ID without a path (X509-SVID 3.1)",
     lambda w: _spiffe_identity(w, ["URI:spiffe://example.org"])),
    ("wrong-eku", "a server certificate with clientAuth only", _wrong_eku),
    ("key-usage-digital-signature", "keyUsage without digitalSignature", _no_digital_signature),
    ("weak-key", "RSA-1024 (OpenSSL 3, security level 2)", _weak_rsa),
    ("weak-key", "P-192 (BoringSSL has no such curve)", _weak_curve),
    ("weak-signature", "a SHA-1 signature (OpenSSL 3, security level 2; Go since 1.18)", _sha1),
    ("issuer-not-ca", "a leaf signed by a CA:FALSE certificate", _issuer_not_ca),
    ("missing-intermediate", "the server sends the leaf alone", _missing_intermediate),
    ("chain-order", "the intermediate before the leaf", _chain_order),
    ("chain-untrusted", "a server certificate from another CA", _untrusted),
    ("chain-rejected", "a CA below a pathLenConstraint 0 CA", _path_length),
    ("trust-bundle-empty", "an empty trust bundle", _empty_bundle),
    ("trust-ca-expired", "an expired CA in the trust bundle", _expired_anchor),
]


@pytest.mark.parametrize(("finding", "what", "make"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_the_error_is_one_a_real_stack_fails_on(world: World, finding: str, what: str, make: Callable[[World], Proof]) -> None:
    findings, stack = make(world)
    severities = {f.severity for f in findings if f.id == finding}
    assert Severity.ERROR in severities, f"doctor did not report {finding} as an error: {findings}"
    assert stack != "OK", f"{what}: the real stack accepted it, so {finding} must not be an error"


def _error_capable_ids() -> set[str]:
    """Every finding id the doctor can raise as an error, read from its source, so a new one
    without a proof here fails this module."""
    ids: set[str] = set()
    for path in (REPO / "grpcpki" / "diagnosis").glob("*.py"):
        if path.name in ("probe.py", "handshake.py", "store.py"):
            continue  # live observations of a failure, and the PKI-level loops over the doctor
        text = path.read_text()
        ids |= set(re.findall(r'Finding\(\s*"([a-z0-9-]+)",\s*(?:_ERROR|Severity\.ERROR|_E)\b', text))
    return ids | {"spiffe-svid", "chain-rejected", "not-pem"}


def test_every_error_level_finding_has_a_proof() -> None:
    proven = {c[0] for c in CASES}
    assert _error_capable_ids() <= proven, sorted(_error_capable_ids() - proven)
