"""Key types, generation and (de)serialisation of private keys."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from grpcpki.engine.errors import PassphraseError, PemError
# KeyType lives in a module of its own, free of cryptography, so that reading a manifest
# (grpcpki apply's no-op path) does not import it; it is re-exported here.
from grpcpki.engine.keytypes import KeyType
from grpcpki.engine.pem import split_pem

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def generate_key(key_type: KeyType) -> PrivateKey:
    if key_type is KeyType.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    bits = int(key_type.value.split("-")[1])
    # 65537: the only public exponent every verifier accepts (RFC 8017 recommends it).
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_type_of(key: PrivateKey | PublicKey) -> KeyType | None:
    """The KeyType of a key, or None for one grpcpki would not generate (e.g. P-521, RSA-1024)."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": KeyType.ECDSA_P256, "secp384r1": KeyType.ECDSA_P384}.get(key.curve.name)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        try:
            return KeyType(f"rsa-{key.key_size}")
        except ValueError:
            return None
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return KeyType.ED25519
    return None


def describe_key(key: object) -> str:
    """Human name of a public or private key: 'ecdsa-p256', 'rsa-1024', 'dsa-1024'..."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        names = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
        return f"ecdsa-{names.get(key.curve.name, key.curve.name)}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    key_size = getattr(key, "key_size", None)
    kind = type(key).__name__.replace("_", "").replace("PrivateKey", "").replace("PublicKey", "").lower()
    return f"{kind}-{key_size}" if key_size else kind


def signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    """Hash to sign with: SHA-384 for P-384 (matched strength), none for Ed25519, else SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM: the one format Go, Java (PKCS8EncodedKeySpec), Node and BoringSSL all read.
    With a passphrase: PBES2, PBKDF2-HMAC-SHA256 x KDF_ITERATIONS, AES-256-CBC (see below)."""
    if passphrase:
        return encrypted_private_key_pem(key, passphrase)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def is_encrypted_pem(pem: bytes) -> bool:
    return b"ENCRYPTED PRIVATE KEY" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def load_private_key(pem: bytes, passphrase: bytes | None = None, *, source: str = "key") -> PrivateKey:
    """Parse a PEM private key, turning every failure into a PemError or PassphraseError with a hint."""
    if b"-----BEGIN" not in pem:
        raise PemError(f"{source} is not a PEM file", "expected a '-----BEGIN PRIVATE KEY-----' block")
    if b"PRIVATE KEY-----" not in pem:
        kind = "a certificate" if b"BEGIN CERTIFICATE" in pem else "not a private key"
        raise PemError(f"{source} holds {kind}, not a private key", "point at the .key / key.pem file")
    encrypted = is_encrypted_pem(pem)
    if encrypted and not passphrase:
        raise PassphraseError(
            f"{source} is encrypted and no passphrase was given",
            "set GRPCPKI_PASSPHRASE or pass --passphrase-file",
        )
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise PassphraseError(
                f"wrong passphrase for {source}", "check GRPCPKI_PASSPHRASE or the --passphrase-file contents"
            ) from None
        raise PemError(f"{source} is not a readable private key: {exc}") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise PemError(f"{source} is not a usable private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise PemError(f"{source} is a {describe_key(key)} key, which gRPC peers do not accept", "use ECDSA or RSA")
    return key


def public_key_bytes(key: PrivateKey | PublicKey) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- private keys at rest ------------------------------------------------------------------------
# An encrypted key is PKCS#8 EncryptedPrivateKeyInfo with PBES2 (RFC 8018 6.2, appendix A.2/A.4):
# PBKDF2-HMAC-SHA256 with KDF_ITERATIONS, then AES-256-CBC. That is exactly what
#   openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 600000
# writes, so `openssl pkey -in root.key` (and Go, Java and Node) read it back. cryptography's
# BestAvailableEncryption uses 2,048 PBKDF2 iterations, and its encryption_builder() does not
# take PKCS#8 (only OpenSSH and PKCS#12), so the structure is written here; every primitive
# (PBKDF2, AES, padding) is cryptography's, and reading is cryptography's own loader.
# 600,000: OWASP Password Storage Cheat Sheet, PBKDF2-HMAC-SHA256 (2023). About 0.07 s per
# unlock on a 2-core machine; an attacker pays the same per guess.
KDF_ITERATIONS = 600_000
_SALT_BYTES = 16  # RFC 8018 4.1 asks for at least 8; NIST SP 800-132 for 16
# scrypt (RFC 7914 section 7, as `openssl pkcs8 -scrypt` writes it) counts as strong from
# OWASP's N=2^17 (r=8, p=1).
_MIN_SCRYPT_COST = 2**17

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_PBKDF2 = "1.2.840.113549.1.5.12"
_OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_OID_HMAC_SHA256 = "1.2.840.113549.2.9"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_PRF_NAMES = {
    "1.2.840.113549.2.7": "HMAC-SHA1",
    "1.2.840.113549.2.9": "HMAC-SHA256",
    "1.2.840.113549.2.10": "HMAC-SHA384",
    "1.2.840.113549.2.11": "HMAC-SHA512",
}


@dataclass(frozen=True)
class KeyProtection:
    """How a PEM private key is protected at rest, read from its header (no passphrase needed)."""

    encrypted: bool
    scheme: str  # "none", "PBKDF2-HMAC-SHA256", "scrypt", "PBES1", "OpenSSL legacy (MD5)", ...
    cost: int | None = None  # PBKDF2 iterations or the scrypt N parameter
    strong: bool = False

    def describe(self) -> str:
        if not self.encrypted:
            return "not encrypted"
        cost = f", {self.cost:,} {'iterations' if self.scheme.startswith('PBKDF2') else 'N'}" if self.cost else ""
        return f"{self.scheme}{cost}"


def encrypted_private_key_pem(key: PrivateKey, passphrase: bytes, *, iterations: int = KDF_ITERATIONS) -> bytes:
    """PKCS#8 PEM encrypted with PBES2: PBKDF2-HMAC-SHA256 (``iterations``) and AES-256-CBC."""
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, iv = os.urandom(_SALT_BYTES), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    pbkdf2_params = _sequence(_octets(salt), _integer(iterations), _sequence(_oid(_OID_HMAC_SHA256), _NULL))
    der = _sequence(
        _sequence(
            _oid(_OID_PBES2),
            _sequence(_sequence(_oid(_OID_PBKDF2), pbkdf2_params), _sequence(_oid(_OID_AES256_CBC), _octets(iv))),
        ),
        _octets(ciphertext),
    )
    body = base64.b64encode(der)
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + lines + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"


def key_protection(pem: bytes) -> KeyProtection:
    """Read the KDF and its cost from a PEM key's header; weak or unknown schemes are not strong."""
    if b"Proc-Type: 4,ENCRYPTED" in pem:
        # OpenSSL's traditional format: the key is MD5(passphrase + salt), one round (EVP_BytesToKey).
        return KeyProtection(True, "OpenSSL legacy (MD5, 1 round)")
    blocks = [b for b in split_pem(pem) if b.label == "ENCRYPTED PRIVATE KEY"]
    if not blocks:
        return KeyProtection(False, "none")
    try:
        body = b"".join(blocks[0].text.splitlines()[1:-1])
        der = base64.b64decode(body, validate=False)
        return _pbes_protection(der)
    except (ValueError, IndexError, binascii.Error):
        return KeyProtection(True, "unknown")


def _pbes_protection(der: bytes) -> KeyProtection:
    info = _children(_expect(der, 0x30))  # EncryptedPrivateKeyInfo
    algorithm = _children(_expect_tag(info[0], 0x30))
    scheme = _oid_text(_expect_tag(algorithm[0], 0x06))
    if scheme != _OID_PBES2:
        return KeyProtection(True, f"PBES1 ({scheme})")  # PKCS#5 v1.5 / PKCS#12 PBE: DES, RC2, 3DES
    kdf = _children(_expect_tag(_children(_expect_tag(algorithm[1], 0x30))[0], 0x30))
    kdf_oid = _oid_text(_expect_tag(kdf[0], 0x06))
    params = _children(_expect_tag(kdf[1], 0x30))
    cost = int.from_bytes(_expect_tag(params[1], 0x02), "big")
    if kdf_oid == _OID_SCRYPT:
        return KeyProtection(True, "scrypt", cost, cost >= _MIN_SCRYPT_COST)
    if kdf_oid != _OID_PBKDF2:
        return KeyProtection(True, f"unknown KDF ({kdf_oid})")
    prf = "HMAC-SHA1"  # RFC 8018 A.2: the default when the prf field is absent
    for tag, value in params[2:]:
        if tag == 0x30:
            prf = _PRF_NAMES.get(_oid_text(_expect_tag(_children(value)[0], 0x06)), "unknown PRF")
    # OWASP: 600,000 for HMAC-SHA256, 210,000 for HMAC-SHA512, 1,300,000 for HMAC-SHA1.
    floor = {"HMAC-SHA256": KDF_ITERATIONS, "HMAC-SHA384": 600_000, "HMAC-SHA512": 210_000, "HMAC-SHA1": 1_300_000}
    return KeyProtection(True, f"PBKDF2-{prf}", cost, cost >= floor.get(prf, 10**12))


# Minimal DER (X.690) for the one structure above: definite lengths, no indefinite forms.
_NULL = b"\x05\x00"


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _sequence(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # leading 0: stays positive


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _read(data: bytes, offset: int) -> tuple[int, bytes, int]:
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[offset], data[offset + 1]
    offset += 2
    length = first
    if first & 0x80:
        count = first & 0x7F
        if not 0 < count <= 4 or offset + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    if offset + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[offset : offset + length], offset + length


def _children(body: bytes) -> list[tuple[int, bytes]]:
    items, offset = [], 0
    while offset < len(body):
        tag, value, offset = _read(body, offset)
        items.append((tag, value))
    return items


def _expect(data: bytes, tag: int) -> bytes:
    found, value, _end = _read(data, 0)
    if found != tag:
        raise ValueError("unexpected DER tag")
    return value


def _expect_tag(item: tuple[int, bytes], tag: int) -> bytes:
    if item[0] != tag:
        raise ValueError("unexpected DER tag")
    return item[1]


def _oid_text(body: bytes) -> str:
    arcs, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))
