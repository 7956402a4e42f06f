"""Deliberately broken certificate material, built with ``cryptography`` directly.

The engine refuses to issue most of these (that is its job), so the doctor and probe tests
make them here: CN-only certificates, wrong EKUs, leaves signed by CA:FALSE certificates,
SHA-1 signatures, RSA-1024 keys, expired and not-yet-valid certificates, mismatched keys.

Everything is ECDSA P-256 / SHA-256 and well formed unless a parameter says otherwise, so a
test changes exactly one thing from a good certificate.
"""

from __future__ import annotations

import datetime as dt
import warnings
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.UTC
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH

# Same-length AlgorithmIdentifier OIDs (9 content bytes each), so a SHA-256 TBS can be
# relabelled without re-encoding any length: cryptography >= 45 refuses to sign with
# SHA-1/MD5 itself.
_RSA_SHA256_OID = x509.oid.SignatureAlgorithmOID.RSA_WITH_SHA256.dotted_string
_LEGACY_RSA_OIDS = {
    "sha1": x509.oid.SignatureAlgorithmOID.RSA_WITH_SHA1.dotted_string,
    "md5": x509.oid.SignatureAlgorithmOID.RSA_WITH_MD5.dotted_string,
}


@dataclass(frozen=True)
class Material:
    """A certificate and its private key, as objects and as PEM."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def make_key(kind: str = "ec") -> CertificateIssuerPrivateKeyTypes:
    """``ec`` (P-256), ``ec192`` (P-192, weak), ``rsa2048``, ``rsa1024`` (weak), ``dsa1024``."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec192":
        return ec.generate_private_key(ec.SECP192R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind.startswith("dsa"):
        with warnings.catch_warnings():  # cryptography 51 deprecates DSA: this is a broken key on purpose
            warnings.simplefilter("ignore")
            from cryptography.hazmat.primitives.asymmetric import dsa

            return dsa.generate_private_key(key_size=int(kind[3:]))
    raise ValueError(kind)


def key_pem(key: CertificateIssuerPrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _name(cn: str | None) -> x509.Name:
    if cn is None:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "grpcpki tests")])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _general_name(san: str) -> x509.GeneralName:
    kind, _, value = san.partition(":")
    if kind == "DNS":
        return x509.DNSName(value)
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "URI":
        return x509.UniformResourceIdentifier(value)
    raise ValueError(san)


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(
    builder: x509.CertificateBuilder,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    signature_hash: str,
) -> x509.Certificate:
    if signature_hash == "sha256":
        return builder.sign(issuer_key, hashes.SHA256())
    if not isinstance(issuer_key, rsa.RSAPrivateKey):
        raise ValueError("legacy signature hashes need an RSA issuer key")
    return _legacy_rsa_sign(builder.sign(issuer_key, hashes.SHA256()), issuer_key, signature_hash)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _encode_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return _der(0x06, bytes(out))


def _legacy_rsa_sign(cert: x509.Certificate, key: rsa.RSAPrivateKey, signature_hash: str) -> x509.Certificate:
    """Re-sign ``cert`` with SHA-1 or MD5 by relabelling its signature AlgorithmIdentifier."""
    old = _encode_oid(_RSA_SHA256_OID)
    new = _encode_oid(_LEGACY_RSA_OIDS[signature_hash])
    assert len(old) == len(new)
    tbs = cert.tbs_certificate_bytes.replace(old, new, 1)
    algorithm = hashes.SHA1() if signature_hash == "sha1" else hashes.MD5()
    signature = key.sign(tbs, padding.PKCS1v15(), algorithm)
    alg_id = _der(0x30, new + b"\x05\x00")
    bit_string = _der(0x03, b"\x00" + signature)
    return x509.load_der_x509_certificate(_der(0x30, tbs + alg_id + bit_string))


def make_ca(
    cn: str = "Test Root CA",
    *,
    issuer: Material | None = None,
    key_kind: str = "ec",
    ca: bool | None = True,
    key_cert_sign: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    signature_hash: str = "sha256",
    bc_critical: bool = True,
) -> Material:
    """A root (``issuer=None``) or intermediate CA. ``ca=None`` omits basicConstraints;
    ``bc_critical=False`` marks it non-critical (as easy-rsa's CA does)."""
    key = make_key(key_kind)
    start = not_before or now() - dt.timedelta(days=1)
    end = not_after or start + dt.timedelta(days=3650)
    signer_name = issuer.cert.subject if issuer else _name(cn)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=key_cert_sign, crl_sign=key_cert_sign), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=bc_critical)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return Material(_sign(builder, signer_key, signature_hash), key)


DEFAULT_SERVER_SANS = ("DNS:localhost", "IP:127.0.0.1", "IP:::1")


def make_leaf(
    issuer: Material,
    cn: str | None = "localhost",
    *,
    sans: Sequence[str] | None = DEFAULT_SERVER_SANS,
    eku: Sequence[x509.ObjectIdentifier] | None = (SERVER_AUTH, CLIENT_AUTH),
    key_usage: x509.KeyUsage | None | str = "default",
    ca: bool | None = False,
    key_kind: str = "ec",
    key: CertificateIssuerPrivateKeyTypes | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    signature_hash: str = "sha256",
) -> Material:
    """A leaf signed by ``issuer``. ``sans=None`` omits the SAN extension; ``eku=None`` omits EKU;
    ``key_usage=None`` omits keyUsage; ``ca=None`` omits basicConstraints."""
    key = key or make_key(key_kind)
    start = not_before or now() - dt.timedelta(hours=1)
    end = not_after or start + dt.timedelta(days=365)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=cn is None
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if key_usage == "default":
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        key_usage = _key_usage(digital_signature=True, key_encipherment=is_rsa)
    if key_usage is not None:
        assert isinstance(key_usage, x509.KeyUsage)
        builder = builder.add_extension(key_usage, critical=True)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    return Material(_sign(builder, issuer.key, signature_hash), key)


def key_usage(**flags: bool) -> x509.KeyUsage:
    """keyUsage with only the named flags set, e.g. ``key_usage(key_cert_sign=True)``."""
    return _key_usage(**flags)


def pem(*materials: Material) -> bytes:
    """The certificates of ``materials`` concatenated, in the order given."""
    return b"".join(m.cert_pem for m in materials)
