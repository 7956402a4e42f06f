"""A workload's certificate directory, as ``grpcpki enroll`` writes it and ``renew --daemon`` keeps it.

    DIR/key.pem         private key, generated here, never sent anywhere (0600)
    DIR/chain.pem       leaf + intermediates, what the workload presents (0644)
    DIR/ca.crt          trust bundle from the CA service's GetTrustBundle (0644)
    DIR/enrollment.json what was enrolled and where (name, kind, the CA service address)

Write rule: the trust bundle first (during a CA rotation it trusts both generations, so peers
still verify while the leaf changes), then the key and chain, both staged in full as
``.key.pem.new`` and ``.chain.pem.new`` and fsynced, then renamed key first, chain second (a
hot-reloading server that sees the new chain has the new key; ``grpcpki serve`` keeps the old
pair while they disagree). Recovery (:func:`recover`): a staged chain without a staged key means
the key was already renamed, so the chain is renamed too; both staged means the staging may be
incomplete and the old pair is intact, so both are deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.keys import KeyType, PrivateKey, generate_key, load_private_key, private_key_pem, signature_hash
from grpcpki.engine.storage import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, atomic_write, ensure_dir

KEY = "key.pem"
CHAIN = "chain.pem"
TRUST = "ca.crt"
STATE = "enrollment.json"
_STAGED = ".{}.new"
# Renew between 60% and 70% of the lifetime ("about two thirds"), at a point fixed per certificate
# (from its serial), so a fleet enrolled at the same minute does not renew at the same minute.
RENEW_FROM, RENEW_SPREAD = 0.60, 0.10


class WorkloadError(GrpcpkiError):
    """The workload directory is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class NewKey:
    key_pem: bytes
    csr_pem: bytes


@dataclass(frozen=True)
class Current:
    """What DIR holds now."""

    name: str
    serial: str
    not_before: datetime
    not_after: datetime
    issuer_der: bytes  # the leaf's issuer name, compared with the CA that signs today
    issuer_key_id: bytes | None  # its authority key identifier (RFC 5280 4.2.1.1), when present

    def renew_at(self) -> datetime:
        fraction = RENEW_FROM + RENEW_SPREAD * (int(hashlib.sha256(self.serial.encode()).hexdigest()[:8], 16) / 2**32)
        return self.not_before + (self.not_after - self.not_before) * fraction


def new_key_and_csr(name: str, key_type: KeyType = KeyType.ECDSA_P256) -> NewKey:
    """A fresh key and a CSR for it that proposes no names: the CA service decides them."""
    key: PrivateKey = generate_key(key_type)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "workload")])
    )
    csr = builder.sign(key, signature_hash(key))  # type: ignore[arg-type]
    return NewKey(private_key_pem(key), csr.public_bytes(serialization.Encoding.PEM))


def csr_for_existing_key(key_pem: bytes, name: str) -> bytes:
    key = load_private_key(key_pem, source="the workload key")
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "workload")])
    )
    return builder.sign(key, signature_hash(key)).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def write_material(directory: Path, *, key_pem: bytes, chain_pem: bytes, trust_pem: bytes) -> None:
    """Write a new key, chain and trust bundle by the write rule above."""
    ensure_dir(directory)
    recover(directory)
    write_trust(directory, trust_pem)
    staged_key, staged_chain = _staged(directory, KEY), _staged(directory, CHAIN)
    atomic_write(staged_key, key_pem, PRIVATE_FILE_MODE)
    atomic_write(staged_chain, chain_pem, PUBLIC_FILE_MODE)
    os.replace(staged_key, directory / KEY)
    os.replace(staged_chain, directory / CHAIN)
    _fsync_dir(directory)


def write_trust(directory: Path, trust_pem: bytes) -> bool:
    """Replace ca.crt if it changed; True if it did."""
    path = directory / TRUST
    try:
        if path.read_bytes() == trust_pem:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, trust_pem, PUBLIC_FILE_MODE)
    return True


def recover(directory: Path) -> None:
    staged_key, staged_chain = _staged(directory, KEY), _staged(directory, CHAIN)
    if staged_chain.exists() and not staged_key.exists():
        os.replace(staged_chain, directory / CHAIN)
    else:
        for path in (staged_key, staged_chain):
            path.unlink(missing_ok=True)


def write_state(directory: Path, state: dict[str, object]) -> None:
    atomic_write(directory / STATE, (json.dumps(state, indent=2) + "\n").encode(), PUBLIC_FILE_MODE)


def read_state(directory: Path) -> dict[str, object]:
    try:
        value = json.loads((directory / STATE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise WorkloadError(f"cannot read {directory / STATE}: {exc}", "enroll again, or fix the file") from None
    return value if isinstance(value, dict) else {}


def read_current(directory: Path) -> Current:
    recover(directory)
    path = directory / CHAIN
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WorkloadError(
            f"{path} does not exist: {directory} holds no enrolled certificate",
            "enroll first: grpcpki enroll --ca-server HOST:PORT --token TOKEN --out DIR",
        ) from None
    except OSError as exc:
        raise WorkloadError(f"cannot read {path}: {exc.strerror}", "check the directory's permissions") from None
    if not (directory / KEY).is_file():
        raise WorkloadError(f"{directory / KEY} is missing", "enroll again with a new token")
    try:
        leaf = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise WorkloadError(f"{path} holds no PEM certificate", "enroll again with a new token") from None
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Current(
        name=str(cns[0].value) if cns else "", serial=f"{leaf.serial_number:x}",
        not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
        issuer_der=leaf.issuer.public_bytes(), issuer_key_id=_aki(leaf),
    )


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def issued_by(current: Current, issuing_ca_pem: bytes) -> bool:
    """Whether the CA that signs new certificates today is the one that signed ``current``."""
    if not issuing_ca_pem:
        return True
    ca = x509.load_pem_x509_certificate(issuing_ca_pem)
    ski = _ski(ca)
    if ski is not None and current.issuer_key_id is not None:
        # By key, not name: a rotated CA may keep its name (grpcpki ca rotate does not rename it).
        return ski == current.issuer_key_id
    return ca.subject.public_bytes() == current.issuer_der


def renewal_reason(current: Current, issuing_ca_pem: bytes, *, now: datetime | None = None) -> str | None:
    """Why DIR's certificate is due now, or None."""
    now = now or datetime.now(UTC)
    if not issued_by(current, issuing_ca_pem):
        return "the CA was rotated: a new CA signs certificates now"
    if now >= current.renew_at():
        return f"{round(_fraction(current, now) * 100)}% of its lifetime has passed"
    return None


def _fraction(current: Current, now: datetime) -> float:
    lifetime = current.not_after - current.not_before
    return (now - current.not_before) / lifetime if lifetime > timedelta(0) else 1.0


def _staged(directory: Path, name: str) -> Path:
    return directory / _STAGED.format(name)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "CHAIN", "KEY", "STATE", "TRUST", "Current", "NewKey", "WorkloadError", "csr_for_existing_key", "issued_by",
    "new_key_and_csr", "read_current", "read_state", "recover", "renewal_reason", "write_material", "write_state",
    "write_trust",
]
