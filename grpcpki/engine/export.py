"""Export a certificate to where it is used: a Kubernetes Secret, a Java keystore, one PEM, env vars.

Every form is built from the files the PKI already holds (``chain.pem``, ``key.pem``, ``ca.crt``),
never from a second copy, so an export after ``grpcpki renew`` carries the renewed certificate.
Writing the result is the caller's job (the CLI writes it like a key: 0600, atomically).
"""

from __future__ import annotations

import base64
import enum
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from grpcpki.engine.certs import check_key_pair, load_certificates
from grpcpki.engine.errors import GrpcpkiError, InvalidNameError, NotFoundError
from grpcpki.engine.keys import load_private_key
from grpcpki.engine.pki import Material, Pki
from grpcpki.engine.storage import read_file

# PBKDF2 rounds for PKCS#12: well above OpenSSL's default (2048) and keytool's (10000), far
# below the 5,000,000 Java's PKCS12KeyStore refuses to load; three derivations (key bag,
# certificate bag, MAC) keep loading the keystore well under a second.
PKCS12_KDF_ROUNDS = 100_000
# Kubernetes object names are DNS-1123 subdomains, namespaces DNS-1123 labels
# (kubernetes.io/docs/concepts/overview/working-with-objects/names).
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_ENV_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# A store password file holds one line; like the CA passphrase (cli/context.py), 4 KiB is far
# above any real password and keeps `--password-file /dev/zero`-style mistakes cheap.
MAX_PASSWORD_BYTES = 4096


class ExportFormat(enum.StrEnum):
    K8S = "k8s"  # Secret of type kubernetes.io/tls (tls.crt, tls.key, ca.crt)
    PKCS12 = "pkcs12"  # Java (and .NET, browsers) keystore: key + chain
    TRUSTSTORE = "truststore"  # Java truststore (PKCS#12): the CA bundle as trusted entries
    PEM = "pem"  # chain, then key (then the CA bundle with include_ca): one file
    ENV = "env"  # shell variable assignments holding the PEM texts


# What each format needs; a format without the key can be exported for a CSR-signed certificate.
_NEEDS_KEY = {
    ExportFormat.K8S: True, ExportFormat.PKCS12: True, ExportFormat.TRUSTSTORE: False,
    ExportFormat.PEM: True, ExportFormat.ENV: True,
}
_NEEDS_PASSWORD = {ExportFormat.PKCS12, ExportFormat.TRUSTSTORE}


@dataclass(frozen=True)
class Export:
    """An exported form of one certificate: the bytes and what they hold."""

    name: str
    kind: str
    format: ExportFormat
    data: bytes = field(repr=False)
    contains_private_key: bool
    binary: bool
    serial: str
    not_after: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "format": self.format.value,
            "contains_private_key": self.contains_private_key,
            "serial": self.serial,
            "not_after": self.not_after,
            "bytes": len(self.data),
        }


def needs_password(fmt: ExportFormat | str) -> bool:
    return ExportFormat(fmt) in _NEEDS_PASSWORD


def read_password_file(path: Path | str) -> bytes:
    """The store password in ``path`` (``--password-file``), through the one reader every input
    file goes through (storage.read_file: a regular file, at most :data:`MAX_PASSWORD_BYTES`; a
    FIFO, device or /dev/zero is refused in one line instead of blocking or filling memory).
    The newline ``echo`` leaves is not part of the password."""
    from grpcpki.engine.errors import PassphraseError

    try:
        data = read_file(path, "password file", limit=MAX_PASSWORD_BYTES)
    except GrpcpkiError as exc:
        raise PassphraseError(exc.message, exc.hint) from None
    return data.rstrip(b"\r\n")


def default_secret_name(name: str, kind: str = "server") -> str:
    """A Kubernetes Secret name for certificate NAME: 'API_Server@prod' -> 'api-server-prod-tls';
    a client's gets '-client-tls', so a server and a client sharing a NAME get two Secrets."""
    base = re.sub(r"[^a-z0-9.-]+", "-", name.lower())
    base = re.sub(r"[-.]{2,}", "-", base).strip("-.") or "grpcpki"
    suffix = "-tls" if kind == "server" else f"-{kind}-tls"
    return f"{base[: 253 - len(suffix)].rstrip('-.')}{suffix}"


def validate_secret_name(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise InvalidNameError(
            f"{value!r} is not a valid Kubernetes Secret name",
            "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (max 253)",
        )
    return value


def validate_namespace(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise InvalidNameError(
            f"{value!r} is not a valid Kubernetes namespace",
            "use lowercase letters, digits and '-', starting and ending with a letter or digit (max 63)",
        )
    return value


def validate_env_prefix(value: str) -> str:
    if value and not _ENV_PREFIX.match(value):
        raise InvalidNameError(
            f"{value!r} is not a valid environment variable prefix", "use letters, digits and '_' (e.g. TLS_)"
        )
    return value


def export(
    pki: Pki,
    name: str,
    fmt: ExportFormat | str,
    *,
    password: bytes | None = None,
    namespace: str | None = None,
    secret_name: str | None = None,
    env_prefix: str = "TLS_",
    include_ca: bool = False,
) -> Export:
    """Build the ``fmt`` form of the active certificate NAME.

    ``password`` encrypts the PKCS#12 forms (required for them, ignored by the others).
    """
    fmt = ExportFormat(fmt)
    if fmt in _NEEDS_PASSWORD and not password:
        raise GrpcpkiError(f"a {fmt.value} export needs a password", "give one with --password-file or a prompt")
    if namespace is not None:
        validate_namespace(namespace)
    if secret_name is not None:
        validate_secret_name(secret_name)
    validate_env_prefix(env_prefix)
    if fmt is ExportFormat.TRUSTSTORE:
        # The CA bundle alone: no key needed, so a certificate signed from a CSR has this one too.
        assert password is not None
        record = pki.find(name)
        return Export(
            name=record.name, kind=record.kind, format=fmt,
            data=_java_truststore(read_file(pki.trust_bundle_path, "trust bundle"), password),
            contains_private_key=False, binary=True, serial=record.serial, not_after=record.not_after,
        )
    material = _material(pki, name, needs_key=_NEEDS_KEY[fmt], fmt=fmt)
    chain_pem = read_file(material.chain_path, "certificate chain")
    trust_pem = read_file(material.trust_path, "trust bundle")
    key_pem = b""
    if _NEEDS_KEY[fmt]:
        key_pem = read_file(material.key_path, "private key")
        # Never package a key with a certificate it does not belong to (a half-restored backup).
        check_key_pair(chain_pem, key_pem)
    if fmt is ExportFormat.K8S:
        data = _k8s_secret(material, chain_pem, key_pem, trust_pem, namespace, secret_name or default_secret_name(material.name, material.role.value))
    elif fmt is ExportFormat.PKCS12:
        assert password is not None
        data = _pkcs12_keystore(material, chain_pem, key_pem, password)
    elif fmt is ExportFormat.PEM:
        data = _ensure_newline(chain_pem) + _ensure_newline(key_pem) + (_ensure_newline(trust_pem) if include_ca else b"")
    else:
        data = _env(material, chain_pem, key_pem, trust_pem, env_prefix)
    return Export(
        name=material.name, kind=material.role.value, format=fmt, data=data,
        contains_private_key=_NEEDS_KEY[fmt], binary=fmt in _NEEDS_PASSWORD,
        serial=material.info.serial_hex, not_after=material.info.not_after,
    )


def _material(pki: Pki, name: str, *, needs_key: bool, fmt: ExportFormat) -> Material:
    record = pki.find(name)
    if needs_key and record.key_path is None:
        raise NotFoundError(
            f"{record.kind} certificate {name!r} was signed from a CSR: grpcpki never had its private key, "
            f"so it cannot put it in a {fmt.value} export",
            "build the export where the key lives, or export --format truststore for the CA alone",
        )
    return pki.material(name)


def _ensure_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _k8s_secret(
    material: Material, chain_pem: bytes, key_pem: bytes, trust_pem: bytes, namespace: str | None, secret_name: str
) -> bytes:
    """A Secret of type kubernetes.io/tls: the keys tls.crt and tls.key are the ones the API
    server requires for that type; ca.crt is the convention cert-manager and ingress-nginx read."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    # json.dumps makes every scalar a double-quoted YAML string: no value can turn into YAML syntax.
    q = json.dumps
    lines = [
        f"# {material.role.value} certificate {material.name}: serial {material.info.serial_hex}, "
        f"expires {material.info.not_after:%Y-%m-%dT%H:%M:%SZ}. Apply with: kubectl apply -f FILE",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {q(secret_name)}",
    ]
    if namespace is not None:
        lines.append(f"  namespace: {q(namespace)}")
    lines += [
        "  labels:",
        '    app.kubernetes.io/managed-by: "grpcpki"',
        "  annotations:",
        f"    grpcpki/name: {q(material.name)}",
        f"    grpcpki/kind: {q(material.role.value)}",
        f"    grpcpki/serial: {q(material.info.serial_hex)}",
        f"    grpcpki/not-after: {q(material.info.not_after.strftime('%Y-%m-%dT%H:%M:%SZ'))}",
        "type: kubernetes.io/tls",
        "data:",
        f"  tls.crt: {b64(chain_pem)}",
        f"  tls.key: {b64(key_pem)}",
        f"  ca.crt: {b64(trust_pem)}",
    ]
    return ("\n".join(lines) + "\n").encode()


def _pkcs12_encryption(password: bytes) -> serialization.KeySerializationEncryption:
    # PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and a SHA-256 MAC: OpenSSL 3 reads it without
    # -legacy (the default 3DES/RC2 of older tools needs the legacy provider) and so does Java
    # since 8u301. cryptography's BestAvailableEncryption would choose for us; spelled out here.
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(PKCS12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )


def _pkcs12_keystore(material: Material, chain_pem: bytes, key_pem: bytes, password: bytes) -> bytes:
    """One key entry (alias NAME) whose chain is leaf, intermediates, root.

    The root goes in too so Java shows the whole path. Java reads a CA certificate in a PKCS#12
    as trusted only with Oracle's trustedKeyUsage attribute (2.16.840.1.113894.746875.1.1),
    which cryptography writes only for certificate-only stores: trust goes in the separate
    truststore export (pyca/cryptography#7065, #12393).
    """
    chain = load_certificates(chain_pem, source=str(material.chain_path))
    key = load_private_key(key_pem, source=str(material.key_path))
    leaf, others = chain[0], list(chain[1:])
    seen = {c.fingerprint(hashes.SHA256()) for c in chain}
    for anchor in load_certificates(read_file(material.trust_path, "trust bundle"), source=str(material.trust_path)):
        # The root this chain ends at (matching issuer), not every root in the bundle.
        if anchor.fingerprint(hashes.SHA256()) not in seen and anchor.subject == (others or chain)[-1].issuer:
            others.append(anchor)
    return pkcs12.serialize_key_and_certificates(
        material.name.encode(), key, leaf, others, _pkcs12_encryption(password)
    )


def _java_truststore(trust_pem: bytes, password: bytes) -> bytes:
    anchors = load_certificates(trust_pem, source="trust bundle")
    entries = []
    for index, cert in enumerate(anchors):
        cns = [a.value for a in cert.subject if a.oid.dotted_string == "2.5.4.3"]
        alias = str(cns[0]) if cns else f"ca-{index + 1}"
        entries.append(pkcs12.PKCS12Certificate(cert, alias.encode()))
    return pkcs12.serialize_java_truststore(entries, _pkcs12_encryption(password))


def _env(material: Material, chain_pem: bytes, key_pem: bytes, trust_pem: bytes, prefix: str) -> bytes:
    """POSIX shell assignments: `eval "$(grpcpki export NAME --format env)"` or `. ./FILE`.

    Single quotes keep the newlines and every other byte literally; PEM text has no quote in it.
    """

    def quote(data: bytes) -> str:
        text = data.decode("ascii").strip("\n")
        if "'" in text:  # cannot happen for PEM; refuse rather than emit broken shell
            raise GrpcpkiError("PEM text holds a quote character", "the file is damaged; reissue the certificate")
        return f"'{text}'"

    lines = [
        f"# {material.role.value} certificate {material.name}: serial {material.info.serial_hex}, "
        f"expires {material.info.not_after:%Y-%m-%dT%H:%M:%SZ}",
        f"export {prefix}NAME='{material.name}'",
        f"export {prefix}CERT={quote(chain_pem)}",
        f"export {prefix}KEY={quote(key_pem)}",
        f"export {prefix}CA={quote(trust_pem)}",
    ]
    return ("\n".join(lines) + "\n").encode()


__all__ = [
    "Export",
    "ExportFormat",
    "PKCS12_KDF_ROUNDS",
    "default_secret_name",
    "export",
    "needs_password",
    "read_password_file",
    "validate_env_prefix",
    "validate_namespace",
    "validate_secret_name",
]
