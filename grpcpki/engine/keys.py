"""Key types, generation and (de)serialisation of private keys."""

from __future__ import annotations

import enum
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from grpcpki.engine.errors import PassphraseError, PemError

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class KeyType(enum.StrEnum):
    """Key algorithms a certificate can carry. ECDSA P-256 is the default: every gRPC stack
    (BoringSSL, Go, Java, grpc-js/OpenSSL) handles it, and it is fast to generate and sign."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    # Ed25519: Go and BoringSSL accept it in TLS 1.3, but Java's default providers and some
    # grpc-js/OpenSSL builds do not; offered for homogeneous fleets, never the default.
    ED25519 = "ed25519"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")


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
    """PKCS#8 PEM: the one format Go, Java (PKCS8EncodedKeySpec), Node and BoringSSL all read."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


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
