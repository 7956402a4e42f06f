"""Reading material as other tools lay it out: PEM or DER, one object or several, keys in any
PEM flavour (PKCS#8, PKCS#1 ``RSA PRIVATE KEY``, SEC1 ``EC PRIVATE KEY``, encrypted), files with
the wrong object in them. What is wrong with a *file* becomes a finding here; what is wrong with
the certificates in it is for :mod:`.certificate` and :mod:`.chain`.

gRPC itself reads PEM only (BoringSSL ``PEM_read_bio_*``): a DER file is read here so the other
checks can still run, and reported as ``not-pem`` with the conversion command.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from grpcpki.diagnosis.findings import Finding, PemKind, Severity, Source
from grpcpki.engine.certs import fully_parsed
from grpcpki.engine.errors import GrpcpkiError, NotFoundError, PassphraseError, PemError
from grpcpki.engine.keys import KDF_ITERATIONS, is_encrypted_pem, key_protection, load_private_key
from grpcpki.engine.pem import split_pem
from grpcpki.engine.storage import read_file

__all__ = ["load_certs", "load_crl", "load_key", "parse_known", "pem_blocks", "permission_findings", "read", "source_label"]

_ERROR, _WARNING = Severity.ERROR, Severity.WARNING
_KEY_LABELS = frozenset(
    {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"DSA PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}
)
_LABEL_NAMES = {
    b"CERTIFICATE REQUEST": "a certificate request (CSR)",
    b"NEW CERTIFICATE REQUEST": "a certificate request (CSR)",
    b"PUBLIC KEY": "a public key",
    b"X509 CRL": "a CRL",
    b"OPENSSH PRIVATE KEY": "an OpenSSH-format private key",
    b"TRUSTED CERTIFICATE": "an OpenSSL 'TRUSTED CERTIFICATE'",
}


def source_label(source: Source, what: str) -> str:
    """How findings name a source: its path, or ``what`` (e.g. "the certificate chain") for bytes."""
    return what if isinstance(source, bytes) else os.fspath(source)


def read(source: Source, subject: str) -> tuple[bytes | None, list[Finding]]:
    if isinstance(source, bytes):
        return source, []
    path = Path(source)
    try:
        # Regular files only, size-capped (engine/storage.py): /dev/zero or a FIFO is a finding, not a hang.
        return read_file(path, "file"), []
    except NotFoundError as exc:
        code = "file-unreadable" if path.is_dir() else "file-missing"
        return None, [Finding(code, _ERROR, exc.message + ".", None, subject)]
    except GrpcpkiError as exc:
        return None, [Finding("file-unreadable", _ERROR, exc.message + ".", f"ls -l {shlex.quote(str(path))}", subject)]


def pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    # Linear in the input (engine/pem.py); a backreferencing regex was quadratic on hostile files.
    return [(block.label.encode(), block.text) for block in split_pem(data)]


def not_pem(data: bytes, subject: str, what: str) -> Finding:
    if not data.strip():
        return Finding("not-pem", _ERROR, f"{subject} is empty; it should hold {what}.", None, subject)
    if data[:1] == b"\x30":
        # A DER SEQUENCE; gRPC (BoringSSL PEM_read_bio_*) reads PEM only.
        fix = f"openssl x509 -inform DER -in {shlex.quote(subject)} -out {shlex.quote(subject)}.pem"
        if what == "a private key":
            fix = f"openssl pkey -inform DER -in {shlex.quote(subject)} -out {shlex.quote(subject)}.pem"
        return Finding(
            "not-pem", _ERROR, f"{subject} is binary DER, but gRPC reads PEM; it should hold {what}.", fix, subject
        )
    return Finding("not-pem", _ERROR, f"{subject} holds no PEM block; it should hold {what}.", None, subject)


def describe_label(label: bytes) -> str:
    if label in _KEY_LABELS:
        return "a private key"
    if label == b"CERTIFICATE":
        return "a certificate"
    return _LABEL_NAMES.get(label, f"a PEM '{label.decode()}' block")


def load_certs(source: Source, expect: PemKind, subject: str) -> tuple[list[x509.Certificate], list[Finding]]:
    """Certificates of a certificate / chain / bundle file, and what is wrong with the file itself."""
    data, findings = read(source, subject)
    if data is None:
        return [], findings
    what = {"certificate": "one certificate", "chain": "a certificate chain", "bundle": "CA certificates"}[expect]
    blocks = pem_blocks(data)
    if not blocks:
        if expect == "bundle" and not data.strip():
            return [], [
                Finding(
                    "trust-bundle-empty",
                    _ERROR,
                    f"trust bundle {subject} is empty, so it trusts nobody.",
                    "copy the CA certificate (ca.pem) into it",
                    subject,
                )
            ]
        der = _der_certificate(data)
        # A DER certificate (Windows exports, Java keytool -exportcert, `openssl x509 -outform
        # DER`): gRPC cannot load it, but the certificate itself can still be checked.
        return ([der] if der is not None else []), [not_pem(data, subject, what)]
    certs: list[x509.Certificate] = []
    others: list[bytes] = []
    for label, block in blocks:
        if label != b"CERTIFICATE":
            others.append(label)
            continue
        try:
            certs.append(fully_parsed(x509.load_pem_x509_certificate(block)))
        except (ValueError, UnsupportedAlgorithm):
            findings.append(
                Finding("not-pem", _ERROR, f"certificate #{len(certs) + 1} in {subject} does not parse.", None, subject)
            )
            return [], findings
    if others:
        found = ", ".join(sorted({describe_label(lbl) for lbl in others}))
        if certs:
            # BoringSSL skips blocks of other types, so this loads; a private key in a file that is
            # handed around as "the certificate" is the real risk.
            findings.append(
                Finding(
                    "wrong-pem-type",
                    _WARNING,
                    f"{subject} also holds {found} besides certificates.",
                    "keep private keys in their own file",
                    subject,
                )
            )
        else:
            findings.append(
                Finding("wrong-pem-type", _ERROR, f"{subject} holds {found} where {what} belongs.", None, subject)
            )
    if expect == "certificate" and len(certs) > 1:
        findings.append(
            Finding(
                "too-many-objects",
                _WARNING,
                f"{subject} holds {len(certs)} certificates where one belongs; only the first is used.",
                "keep only the first certificate; put the chain in its own file",
                subject,
            )
        )
    return certs, findings


def load_key(source: Source, passphrase: bytes | None, subject: str) -> tuple[PrivateKeyTypes | None, list[Finding]]:
    data, findings = read(source, subject)
    if data is None:
        return None, findings
    blocks = pem_blocks(data)
    keys = [block for label, block in blocks if label in _KEY_LABELS]
    if not keys:
        if blocks:
            found = ", ".join(sorted({describe_label(lbl) for lbl, _ in blocks}))
            fix = None
            if any(lbl == b"OPENSSH PRIVATE KEY" for lbl, _ in blocks):
                fix = f"ssh-keygen -p -m PKCS8 -f {shlex.quote(subject)}"
            return None, findings + [
                Finding("wrong-pem-type", _ERROR, f"{subject} holds {found} where a private key belongs.", fix, subject)
            ]
        return None, findings + [not_pem(data, subject, "a private key")]
    if len(keys) > 1:
        # BoringSSL's PEM_read_bio_PrivateKey, Go and OpenSSL take the first, so this works when the first
        # is the right one (key-mismatch says when it is not); which one was meant is anyone's guess.
        findings.append(
            Finding(
                "too-many-objects",
                _WARNING,
                f"{subject} holds {len(keys)} private keys where one belongs; gRPC uses the first.",
                None,
                subject,
            )
        )
    findings += kdf_findings(keys[0], subject)
    try:
        return load_private_key(keys[0], passphrase, source=subject), findings
    except PassphraseError as exc:
        if is_encrypted_pem(keys[0]) and not passphrase:
            # grpcio takes the key as raw PEM bytes and has no passphrase callback.
            finding = Finding(
                "key-encrypted",
                _ERROR,
                f"{subject} is encrypted and no passphrase was given, so it cannot be checked (nor loaded by gRPC).",
                exc.hint,
                subject,
            )
        else:
            finding = Finding(
                "key-wrong-passphrase", _ERROR, f"the passphrase does not decrypt {subject}.", exc.hint, subject
            )
        return None, findings + [finding]
    except PemError as exc:
        return None, findings + [Finding("not-pem", _ERROR, f"{exc.message}.", exc.hint, subject)]


def kdf_findings(key_pem: bytes, subject: str) -> list[Finding]:
    """An encrypted key whose passphrase is cheap to guess offline: OpenSSL's traditional
    ``Proc-Type: 4,ENCRYPTED`` (one MD5 round), PKCS#5 v1.5 PBES1 (DES/RC2), or PBKDF2 with
    far fewer iterations than OWASP's floor (``openssl genpkey -aes256`` uses 2,048). Read from
    the PEM header alone: no passphrase needed (engine/keys.key_protection)."""
    if not is_encrypted_pem(key_pem):
        return []
    protection = key_protection(key_pem)
    if protection.strong:
        return []
    # Writes a new file beside the key (safe as printed): openssl asks for the old and new passphrase.
    fix = (f"openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter {KDF_ITERATIONS} "
           f"-in {shlex.quote(subject)} -out {shlex.quote(subject + '.new')}")
    return [
        Finding(
            "key-weak-kdf",
            _WARNING,
            f"{subject} is encrypted with {protection.describe()}: a stolen copy's passphrase is cheap to guess "
            f"offline (grpcpki writes PBKDF2-HMAC-SHA256 with {KDF_ITERATIONS:,} iterations and AES-256-CBC).",
            fix,
            subject,
        )
    ]


def permission_findings(source: Source, subject: str) -> list[Finding]:
    if isinstance(source, bytes) or os.name == "nt":
        return []
    try:
        mode = stat.S_IMODE(os.stat(source).st_mode)
    except OSError:
        return []
    if mode & 0o077:
        # mkcert/ssh convention: a private key is 0600, readable by its owner only.
        return [
            Finding(
                "key-permissions",
                _WARNING,
                f"{subject} has mode {mode:04o}; group or others can access the private key.",
                f"chmod 600 {shlex.quote(subject)}",
                subject,
            )
        ]
    return []


# --------------------------------------------------------------------------- certificate facts


def _der_certificate(data: bytes) -> x509.Certificate | None:
    if data[:1] != b"\x30":
        return None
    try:
        return fully_parsed(x509.load_der_x509_certificate(data))
    except (ValueError, UnsupportedAlgorithm):
        return None


def parse_known(known_cas: Sequence[bytes]) -> list[x509.Certificate]:
    """Certificates of PEM blobs (the PKI's intermediates), for naming a missing intermediate."""
    return [
        x509.load_pem_x509_certificate(block)
        for blob in known_cas
        for label, block in pem_blocks(blob)
        if label == b"CERTIFICATE"
    ]


def load_crl(source: Source, subject: str) -> tuple[x509.CertificateRevocationList | None, list[Finding]]:
    """A CRL, PEM (``X509 CRL``, as ``grpcpki revoke`` and OpenSSL write it) or DER."""
    data, findings = read(source, subject)
    if data is None:
        return None, findings
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data), findings
        return x509.load_der_x509_crl(data), findings
    except ValueError:
        return None, findings + [Finding("not-pem", _ERROR, f"{subject} is not a CRL (PEM or DER).", None, subject)]
