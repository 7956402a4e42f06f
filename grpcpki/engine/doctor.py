"""Static diagnosis of certificate material: no network, pure functions over PEM bytes or file paths.

Each check returns :class:`Finding` objects. A finding's ``id`` is stable (it is what
``grpcpki doctor --json`` prints), so scripts may match on it; wording of ``message`` may change.

Inputs are a :data:`Source`: ``bytes`` are PEM content, ``str``/``os.PathLike`` are file paths.
File-level checks (permissions, unreadable file) only run for paths.

======================================  ========  ===========================================================
id                                      severity  meaning
======================================  ========  ===========================================================
file-missing                            error     the file does not exist
file-unreadable                         error     the file exists but cannot be read
not-pem                                 error     no PEM block (empty, DER, garbage) or a PEM block that does not parse
wrong-pem-type                          error     a key where a certificate belongs, a certificate where a key belongs,
                                                  a CSR, an OpenSSH key...; warning when the right object is there too
too-many-objects                        error     several certificates where one belongs, several keys in one key file
key-encrypted                           error     the private key is encrypted and no passphrase was given
key-wrong-passphrase                    error     the passphrase does not decrypt the private key
key-permissions                         warning   the private key file is readable or writable by group/others
key-mismatch                            error     the private key does not belong to the certificate
expired                                 error     a certificate (leaf or intermediate) is past notAfter
not-yet-valid                           error     a certificate is before notBefore (clock skew, or issued for later)
expiring-soon                           warning   less than the renewal window left (default min(30 days, 1/3 of lifetime))
cn-only                                 error     no subjectAltName, only a CN (warning for client certificates)
name-mismatch                           error     the name the client dials is not in the server certificate's SANs
wrong-eku                               error     extendedKeyUsage lacks serverAuth (server) / clientAuth (client)
eku-missing                             info      no extendedKeyUsage extension (means "any purpose")
key-usage-digital-signature             error     keyUsage present without digitalSignature
key-usage-key-encipherment              warning   RSA server certificate whose keyUsage lacks keyEncipherment
leaf-can-sign                           warning   a leaf with basicConstraints CA:TRUE or keyUsage keyCertSign
issuer-not-ca                           error     the issuer is not a CA (CA:FALSE / no basicConstraints / no
                                                  keyCertSign); warning when the issuer is the trust anchor itself
missing-intermediate                    error     the chain file lacks an intermediate CA that is known to exist
chain-order                             error     the leaf is not first (warning: intermediates out of order)
chain-includes-root                     info      the chain file also carries the self-signed root
chain-untrusted                         error     the chain does not lead to any CA in the trust bundle
chain-rejected                          error     a strict verifier rejects the chain for a reason not listed above
weak-key                                error     RSA < 2048 bits, EC curve < 256 bits, or DSA
weak-signature                          error     a SHA-1 or MD5 signature on a leaf or intermediate
trust-bundle-empty                      error     the trust bundle file is empty
trust-bundle-not-ca                     warning   the trust bundle holds a certificate that is not a CA
trust-ca-expired                        error     a CA in the trust bundle is expired
======================================  ========  ===========================================================

The chain checks are explanations first: each failure gets its own finding naming the
certificate and the reason. Then the chain is run through ``cryptography.x509.verification``
(the webpki profile, close to Go's ``crypto/x509``); if that verifier still refuses and no
finding explains why, ``chain-rejected`` carries its reason.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
import re
import shlex
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from grpcpki.engine.certs import certificates_pem, info_from_certificate
from grpcpki.engine.errors import PassphraseError, PemError
from grpcpki.engine.keys import is_encrypted_pem, load_private_key, public_key_bytes
from grpcpki.engine.names import San
from grpcpki.engine.verify import name_matches, verify_chain

__all__ = [
    "FINDINGS",
    "Finding",
    "Severity",
    "Source",
    "check_key_file",
    "check_material",
    "check_pem_file",
    "check_trust_bundle",
    "has_errors",
    "matches_host",
]

Source = Union[bytes, str, "os.PathLike[str]"]
RoleName = Literal["server", "client"]
PemKind = Literal["certificate", "chain", "bundle", "key"]


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One problem (or remark) about one file or certificate."""

    id: str
    severity: Severity
    message: str
    fix: str | None = None
    subject: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "message": self.message,
            "fix": self.fix,
            "subject": self.subject,
        }


# id -> one-line meaning; mirrors the table in the module docstring (tests keep them in step).
FINDINGS: dict[str, str] = {
    "file-missing": "the file does not exist",
    "file-unreadable": "the file exists but cannot be read",
    "not-pem": "no PEM block, or a PEM block that does not parse",
    "wrong-pem-type": "the file holds the wrong kind of PEM object",
    "too-many-objects": "several objects where one belongs",
    "key-encrypted": "the private key is encrypted and no passphrase was given",
    "key-wrong-passphrase": "the passphrase does not decrypt the private key",
    "key-permissions": "the private key file is accessible to group/others",
    "key-mismatch": "the private key does not belong to the certificate",
    "expired": "a certificate is past notAfter",
    "not-yet-valid": "a certificate is before notBefore",
    "expiring-soon": "a certificate is inside its renewal window",
    "cn-only": "no subjectAltName, only a common name",
    "name-mismatch": "the dialed name is not in the server certificate's SANs",
    "wrong-eku": "extendedKeyUsage lacks the purpose of the role",
    "eku-missing": "no extendedKeyUsage extension",
    "key-usage-digital-signature": "keyUsage lacks digitalSignature",
    "key-usage-key-encipherment": "RSA server keyUsage lacks keyEncipherment",
    "leaf-can-sign": "a leaf certificate can sign certificates",
    "issuer-not-ca": "the issuer is not a CA",
    "missing-intermediate": "the chain file lacks a known intermediate",
    "chain-order": "the chain file is out of order",
    "chain-includes-root": "the chain file carries the root",
    "chain-untrusted": "the chain does not lead to the trust bundle",
    "chain-rejected": "a strict verifier rejects the chain",
    "weak-key": "the key is too weak",
    "weak-signature": "SHA-1 or MD5 signature",
    "trust-bundle-empty": "the trust bundle is empty",
    "trust-bundle-not-ca": "the trust bundle holds a non-CA certificate",
    "trust-ca-expired": "a CA in the trust bundle is expired",
}

# Findings that already explain why a verifier refuses the chain; chain-rejected is only
# added when none of these was found.
_EXPLAINS_REJECTION = frozenset(
    {
        "expired",
        "not-yet-valid",
        "cn-only",
        "name-mismatch",
        "wrong-eku",
        "key-usage-digital-signature",
        "leaf-can-sign",
        "issuer-not-ca",
        "missing-intermediate",
        "chain-order",
        "chain-untrusted",
        "weak-key",
        "weak-signature",
        "trust-bundle-empty",
        "trust-bundle-not-ca",
        "trust-ca-expired",
        "not-pem",
        "wrong-pem-type",
    }
)

_ERROR, _WARNING, _INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
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
_WEAK_HASHES = frozenset({"sha1", "md5"})
_DEFAULT_WINDOW = dt.timedelta(days=30)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)


# --------------------------------------------------------------------------- fix command lines
# Every suggested command is built here, so the CLI's spelling lives in one place.


def _grpcpki(*args: str) -> str:
    return "grpcpki " + " ".join(shlex.quote(a) for a in args)


def _renew(name: str) -> str:
    return _grpcpki("renew", name)


def _reissue(role: str | None, name: str, host: str | None = None, cert: x509.Certificate | None = None) -> str:
    """The `grpcpki issue ... --replace` line that reissues NAME, keeping ``cert``'s SANs and adding ``host``."""
    args = ["issue", role or "server", name]
    wanted: list[tuple[str, str]] = []
    existing = (_san_list(cert) or []) if cert is not None else []
    for san in existing:
        kind, _, value = san.partition(":")
        if kind in ("DNS", "IP", "URI"):
            wanted.append((f"--{kind.lower()}", value))
    if host is not None:
        ip = _parse_ip(host)
        wanted.append(("--ip", str(ip)) if ip is not None else ("--dns", host))
    for flag, value in dict.fromkeys(wanted):
        args += [flag, value]
    # --replace: NAME usually exists already, and a plain `issue` would refuse it.
    return _grpcpki(*args, "--replace")


# --------------------------------------------------------------------------- reading files


def _label(source: Source, what: str) -> str:
    """How findings name a source: its path, or ``what`` (e.g. "the certificate chain") for bytes."""
    return what if isinstance(source, bytes) else os.fspath(source)


def _read(source: Source, subject: str) -> tuple[bytes | None, list[Finding]]:
    if isinstance(source, bytes):
        return source, []
    path = Path(source)
    try:
        return path.read_bytes(), []
    except FileNotFoundError:
        return None, [Finding("file-missing", _ERROR, f"{path} does not exist.", None, subject)]
    except IsADirectoryError:
        return None, [Finding("file-unreadable", _ERROR, f"{path} is a directory, not a file.", None, subject)]
    except OSError as exc:
        return None, [
            Finding(
                "file-unreadable",
                _ERROR,
                f"{path} cannot be read: {exc.strerror}.",
                f"ls -l {shlex.quote(str(path))}",
                subject,
            )
        ]


def _blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def _not_pem(data: bytes, subject: str, what: str) -> Finding:
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


def _describe_label(label: bytes) -> str:
    if label in _KEY_LABELS:
        return "a private key"
    if label == b"CERTIFICATE":
        return "a certificate"
    return _LABEL_NAMES.get(label, f"a PEM '{label.decode()}' block")


def _load_certs(source: Source, expect: PemKind, subject: str) -> tuple[list[x509.Certificate], list[Finding]]:
    """Certificates of a certificate / chain / bundle file, and what is wrong with the file itself."""
    data, findings = _read(source, subject)
    if data is None:
        return [], findings
    what = {"certificate": "one certificate", "chain": "a certificate chain", "bundle": "CA certificates"}[expect]
    blocks = _blocks(data)
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
        return [], [_not_pem(data, subject, what)]
    certs: list[x509.Certificate] = []
    others: list[bytes] = []
    for label, block in blocks:
        if label != b"CERTIFICATE":
            others.append(label)
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            findings.append(
                Finding("not-pem", _ERROR, f"certificate #{len(certs) + 1} in {subject} does not parse.", None, subject)
            )
            return [], findings
    if others:
        found = ", ".join(sorted({_describe_label(lbl) for lbl in others}))
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
                _ERROR,
                f"{subject} holds {len(certs)} certificates where one belongs.",
                "keep only the first certificate; put the chain in its own file",
                subject,
            )
        )
    return certs, findings


def _load_key(source: Source, passphrase: bytes | None, subject: str) -> tuple[PrivateKeyTypes | None, list[Finding]]:
    data, findings = _read(source, subject)
    if data is None:
        return None, findings
    blocks = _blocks(data)
    keys = [block for label, block in blocks if label in _KEY_LABELS]
    if not keys:
        if blocks:
            found = ", ".join(sorted({_describe_label(lbl) for lbl, _ in blocks}))
            fix = None
            if any(lbl == b"OPENSSH PRIVATE KEY" for lbl, _ in blocks):
                fix = f"ssh-keygen -p -m PKCS8 -f {shlex.quote(subject)}"
            return None, findings + [
                Finding("wrong-pem-type", _ERROR, f"{subject} holds {found} where a private key belongs.", fix, subject)
            ]
        return None, findings + [_not_pem(data, subject, "a private key")]
    if len(keys) > 1:
        # BoringSSL's PEM_read_bio_PrivateKey takes the first; which one was meant is anyone's guess.
        findings.append(
            Finding(
                "too-many-objects",
                _ERROR,
                f"{subject} holds {len(keys)} private keys where one belongs.",
                None,
                subject,
            )
        )
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


def _permission_findings(source: Source, subject: str) -> list[Finding]:
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


def _describe(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        return f"CN={cns[0].value!s}"
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def _cn(cert: x509.Certificate) -> str | None:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    return isinstance(bc, x509.BasicConstraints) and bc.ca


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError):
        # SHA-1/MD5 signatures cannot be checked by cryptography >= 45: fall back to the key identifiers.
        aki = _ext(cert, x509.AuthorityKeyIdentifier)
        ski = _ext(issuer, x509.SubjectKeyIdentifier)
        if isinstance(aki, x509.AuthorityKeyIdentifier) and isinstance(ski, x509.SubjectKeyIdentifier):
            return aki.key_identifier == ski.digest
        return True


def _same_public_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    return bool(public_key_bytes(cert.public_key()) == public_key_bytes(key))  # type: ignore[arg-type]


def _san_list(cert: x509.Certificate) -> list[str] | None:
    """SANs as ``DNS:x`` / ``IP:x`` / ``URI:x``; None when the certificate has no SAN extension."""
    san = _ext(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return None
    out: list[str] = []
    for gn in san:
        if isinstance(gn, x509.DNSName):
            out.append(f"DNS:{gn.value}")
        elif isinstance(gn, x509.IPAddress):
            out.append(f"IP:{gn.value}")
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(f"URI:{gn.value}")
        elif isinstance(gn, x509.RFC822Name):
            out.append(f"email:{gn.value}")
        else:
            out.append(type(gn).__name__)
    return out


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _cn_as_san(cn: str) -> tuple[San, ...]:
    return (San("dns", cn.lower().rstrip(".")),)


def _normalise_dns(host: str) -> str:
    host = host.rstrip(".").lower()
    try:
        import idna

        return idna.encode(host, uts46=True).decode("ascii")
    except Exception:  # not IDNA-encodable: compare as given, the match will simply fail
        return host


def _normalise_host(host: str) -> str:
    ip = _parse_ip(host)
    return str(ip) if ip is not None else _normalise_dns(host)


def matches_host(cert_pem: bytes, host: str) -> bool:
    """Would a gRPC client dialing ``host`` accept this certificate's names?

    IP targets match IP SANs only; DNS targets match DNS SANs, and fall back to the CN only
    when the certificate has no SAN at all (grpc-errors.md scenarios f, f2, q1, q2).
    """
    return _name_match(x509.load_pem_x509_certificate(cert_pem), host)


def _name_match(cert: x509.Certificate, host: str) -> bool:
    info = info_from_certificate(cert)
    if info.has_san_extension:
        return name_matches(_normalise_host(host), info.sans)
    # gRPC C-core falls back to the CN only when there is no SAN at all and the target is DNS.
    cn = info.common_name
    return _parse_ip(host) is None and cn is not None and name_matches(_normalise_dns(host), _cn_as_san(cn))


# --------------------------------------------------------------------------- single-certificate checks


def _validity_findings(
    cert: x509.Certificate,
    now: dt.datetime,
    window: dt.timedelta | None,
    subject: str,
    name: str,
    *,
    anchor: bool = False,
) -> list[Finding]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    what = f"{_describe(cert)}" if subject != _describe(cert) else "the certificate"
    if now > end:
        ago = (now - end).days
        if anchor:
            return [
                Finding(
                    "trust-ca-expired",
                    _ERROR,
                    f"trust anchor {_describe(cert)} expired on {end:%Y-%m-%d} ({ago} days ago).",
                    "remove it from the bundle; if it is your CA, rotate to a new one",
                    subject,
                )
            ]
        return [
            Finding(
                "expired",
                _ERROR,
                f"{what} expired on {end:%Y-%m-%d %H:%M} UTC ({ago} days ago).",
                _renew(name),
                subject,
            )
        ]
    if now < start:
        # BoringSSL: "certificate is not yet valid" (grpc-errors.md h); usually a clock behind on one side.
        return [
            Finding(
                "not-yet-valid",
                _ERROR,
                f"{what} is not valid until {start:%Y-%m-%d %H:%M} UTC; one of the clocks is wrong or it was issued for later.",
                f"check this machine's clock (timedatectl status); if it is right, {_renew(name)}",
                subject,
            )
        ]
    lifetime = end - start
    # cert-manager's default is to renew at 2/3 of the lifetime; 30 days caps that for long certificates.
    threshold = window if window is not None else min(_DEFAULT_WINDOW, lifetime / 3)
    left = end - now
    if left <= threshold:
        hours = left.total_seconds() / 3600
        left_text = f"{left.days} days" if left.days >= 2 else f"{hours:.0f} hours"
        return [
            Finding(
                "expiring-soon",
                _WARNING,
                f"{what} expires on {end:%Y-%m-%d %H:%M} UTC, in {left_text}.",
                _renew(name),
                subject,
            )
        ]
    return []


def _strength_findings(
    cert: x509.Certificate, subject: str, fix: str | None, *, check_signature: bool = True
) -> list[Finding]:
    out: list[Finding] = []
    key = cert.public_key()
    what = _describe(cert)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        # NIST SP 800-131A; cryptography's webpki verifier refuses RSA < 2048 for signatures.
        out.append(
            Finding(
                "weak-key", _ERROR, f"{what} has a {key.key_size}-bit RSA key; 2048 bits is the minimum.", fix, subject
            )
        )
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        out.append(
            Finding("weak-key", _ERROR, f"{what} uses the {key.curve.name} curve; use P-256 or stronger.", fix, subject)
        )
    elif isinstance(key, dsa.DSAPublicKey):
        # TLS 1.3 has no DSA signature scheme (RFC 8446 §4.2.3).
        out.append(Finding("weak-key", _ERROR, f"{what} has a DSA key, which TLS 1.3 cannot use.", fix, subject))
    if check_signature:
        try:
            algorithm = cert.signature_hash_algorithm
        except Exception:  # unknown signature OID
            algorithm = None
        if algorithm is not None and algorithm.name in _WEAK_HASHES:
            # BoringSSL and Go (since 1.18) refuse SHA-1 certificate signatures.
            out.append(
                Finding(
                    "weak-signature",
                    _ERROR,
                    f"{what} is signed with {algorithm.name.upper()}, which TLS libraries reject.",
                    fix,
                    subject,
                )
            )
    return out


def _profile_findings(
    cert: x509.Certificate, role: RoleName | None, host: str | None, subject: str, name: str
) -> list[Finding]:
    """SAN, EKU, keyUsage and basicConstraints of a leaf, against its role."""
    out: list[Finding] = []
    what = _describe(cert)
    sans = _san_list(cert)
    if sans is None:
        # Go has ignored the CN since 1.15 (x509: "certificate relies on legacy Common Name field");
        # gRPC C-core falls back to it for DNS targets only (grpc-errors.md f, f2).
        severity = _WARNING if role == "client" else _ERROR
        cn = _cn(cert)
        out.append(
            Finding(
                "cn-only",
                severity,
                f"{what} has no subjectAltName; Go clients and IP targets ignore the CN.",
                _reissue(role, name, host or cn, cert),
                subject,
            )
        )
    if host is not None and role != "client" and not _name_match(cert, host):
        ip = _parse_ip(host)
        have = ", ".join(sans) if sans else f"no SAN, CN={_cn(cert)}"
        kind = "IP" if ip is not None else "DNS"
        # IP and DNS SANs are not interchangeable (grpc-errors.md q1, q2).
        out.append(
            Finding(
                "name-mismatch",
                _ERROR,
                f"clients dialing {host} look for a {kind} SAN {ip or host}, but {what} has {have}.",
                _reissue("server", name, host, cert),
                subject,
            )
        )
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if role is not None:
        needed = ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        if eku is None:
            out.append(
                Finding(
                    "eku-missing",
                    _INFO,
                    f"{what} has no extendedKeyUsage, which means any purpose (RFC 5280 §4.2.1.12).",
                    None,
                    subject,
                )
            )
        elif (
            isinstance(eku, x509.ExtendedKeyUsage)
            and needed not in eku
            and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
        ):
            have = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku) or "nothing"
            purpose = "serverAuth" if role == "server" else "clientAuth"
            # BoringSSL: "unsupported certificate purpose" (grpc-errors.md j, k).
            out.append(
                Finding(
                    "wrong-eku",
                    _ERROR,
                    f"{what} is a {role} certificate but its extendedKeyUsage allows {have}, not {purpose}.",
                    _reissue(role, name, cert=cert),
                    subject,
                )
            )
    ku = _ext(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage):
        if not ku.digital_signature:
            # TLS 1.3 CertificateVerify is a signature (RFC 8446 §4.4.3; RFC 5280 §4.2.1.3).
            out.append(
                Finding(
                    "key-usage-digital-signature",
                    _ERROR,
                    f"{what} has keyUsage without digitalSignature, so it cannot sign the TLS handshake.",
                    _reissue(role, name, cert=cert),
                    subject,
                )
            )
        if role == "server" and isinstance(cert.public_key(), rsa.RSAPublicKey) and not ku.key_encipherment:
            out.append(
                Finding(
                    "key-usage-key-encipherment",
                    _WARNING,
                    f"{what} is an RSA server certificate without keyEncipherment, so TLS 1.2 RSA key exchange fails.",
                    _reissue(role, name, cert=cert),
                    subject,
                )
            )
    if _is_ca(cert) or (isinstance(ku, x509.KeyUsage) and ku.key_cert_sign):
        # RFC 5280 §4.2.1.3/§4.2.1.9: keyCertSign and cA belong to CAs; a leaf key should not mint certificates.
        out.append(
            Finding(
                "leaf-can-sign",
                _WARNING,
                f"{what} is a leaf but may sign certificates (CA:TRUE or keyCertSign).",
                _reissue(role, name, cert=cert),
                subject,
            )
        )
    return out


# --------------------------------------------------------------------------- chains


@dataclass
class _Pool:
    chain: list[x509.Certificate]
    trusted: list[x509.Certificate]
    known: list[x509.Certificate]

    def issuer_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, str] | None:
        for origin, certs in (("trusted", self.trusted), ("chain", self.chain), ("known", self.known)):
            for candidate in certs:
                if candidate is not cert and _signed_by(cert, candidate):
                    return candidate, origin
        return None


def _order_findings(chain: list[x509.Certificate], leaf: x509.Certificate, subject: str) -> list[Finding]:
    out: list[Finding] = []
    if chain[0] is not leaf:
        # The first certificate is the one paired with the private key (RFC 8446 §4.4.2, BoringSSL
        # SSL_CTX_use_certificate_chain_file).
        out.append(
            Finding(
                "chain-order",
                _ERROR,
                f"{subject} starts with {_describe(chain[0])}; the leaf {_describe(leaf)} must come first.",
                "put the leaf first, then each issuer in order",
                subject,
            )
        )
        return out
    rest = chain[1:]
    for lower, upper in zip(chain, rest, strict=False):
        if not _signed_by(lower, upper) and not _self_signed(upper):
            out.append(
                Finding(
                    "chain-order",
                    _WARNING,
                    f"in {subject}, {_describe(upper)} does not issue {_describe(lower)} just before it.",
                    "list each certificate right after the one it issued",
                    subject,
                )
            )
            break
    for cert in rest:
        if _self_signed(cert):
            out.append(
                Finding(
                    "chain-includes-root",
                    _INFO,
                    f"{subject} also carries the root {_describe(cert)}; peers ignore it.",
                    None,
                    subject,
                )
            )
    return out


def _chain_findings(
    pool: _Pool,
    leaf: x509.Certificate,
    role: RoleName | None,
    now: dt.datetime,
    window: dt.timedelta | None,
    subject: str,
    name: str,
    trust_subject: str,
) -> list[Finding]:
    """Walk from the leaf to a trust anchor, explaining each broken link."""
    out: list[Finding] = []
    current = leaf
    seen: list[x509.Certificate] = [leaf]
    for _ in range(8):
        if any(current == t for t in pool.trusted):
            return out  # the leaf itself is pinned (grpc-errors.md o5)
        found = pool.issuer_of(current)
        if found is None:
            issuer = current.issuer.rfc4514_string()
            anchors = ", ".join(_describe(t) for t in pool.trusted) or "nothing"
            hint = (
                " If it is an intermediate CA, append it to the chain file after the leaf."
                if not _self_signed(current) and len(pool.chain) == 1
                else ""
            )
            out.append(
                Finding(
                    "chain-untrusted",
                    _ERROR,
                    f"{_describe(current)} is issued by {issuer}, which is not in {trust_subject} (it holds {anchors}).{hint}",
                    f"trust the CA that issued it, or re-issue it from this CA: {_reissue(role, name, cert=leaf)}",
                    subject,
                )
            )
            return out
        issuer_cert, origin = found
        if issuer_cert in seen:
            return out
        seen.append(issuer_cert)
        if origin == "known":
            out.append(
                Finding(
                    "missing-intermediate",
                    _ERROR,
                    f"{subject} lacks the intermediate {_describe(issuer_cert)} that issued {_describe(current)}; peers cannot build the chain.",
                    f"append the {_describe(issuer_cert)} certificate to {subject}",
                    subject,
                )
            )
        ku = _ext(issuer_cert, x509.KeyUsage)
        not_ca = not _is_ca(issuer_cert) or (isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign)
        if not_ca:
            if origin == "trusted":
                # BoringSSL does not check a trust anchor's basicConstraints (grpc-errors.md o, o2, o5); Go and webpki do.
                out.append(
                    Finding(
                        "issuer-not-ca",
                        _WARNING,
                        f"trust anchor {_describe(issuer_cert)} is not a CA (no CA:TRUE/keyCertSign); gRPC C-core accepts it, Go and strict verifiers do not.",
                        _reissue(role, name, cert=leaf),
                        subject,
                    )
                )
            else:
                # BoringSSL: "invalid CA certificate" or "unable to get local issuer certificate" (grpc-errors.md o3, o4).
                out.append(
                    Finding(
                        "issuer-not-ca",
                        _ERROR,
                        f"{_describe(current)} is issued by {_describe(issuer_cert)}, which is not a CA (needs CA:TRUE and keyCertSign).",
                        _reissue(role, name, cert=leaf),
                        subject,
                    )
                )
        if origin == "trusted":
            return out
        out += _validity_findings(issuer_cert, now, window, subject, name)
        out += _strength_findings(issuer_cert, subject, _reissue(role, name, cert=leaf))
        current = issuer_cert
    return out


def _verifier_reason(text: str) -> str:
    for prefix in ("validation failed: ", "candidates exhausted: "):
        text = text.replace(prefix, "")
    return re.sub(r" \(encountered processing <Certificate\(.*\)>\)$", "", text)


# --------------------------------------------------------------------------- public checks


def _role_name(role: object) -> RoleName | None:
    if role is None:
        return None
    value = str(getattr(role, "value", role)).lower()
    if value not in ("server", "client"):
        raise ValueError(f"role must be 'server', 'client' or None, not {role!r}")
    return value  # type: ignore[return-value]


def _aware(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def check_pem_file(source: Source, expect: PemKind, *, passphrase: bytes | None = None) -> list[Finding]:
    """Is ``source`` readable PEM holding what it should: one ``certificate``, a ``chain``
    (one or more certificates), a ``bundle`` of CA certificates, or one private ``key``?"""
    subject = _label(source, "the key" if expect == "key" else f"the {expect}")
    if expect == "key":
        return _load_key(source, passphrase, subject)[1] + _permission_findings(source, subject)
    return _load_certs(source, expect, subject)[1]


def check_key_file(
    key: Source, *, cert: Source | None = None, passphrase: bytes | None = None, name: str | None = None
) -> list[Finding]:
    """A private key file: PEM, one key, decryptable, mode 0600, and (given ``cert``) the
    certificate's key. Works for CA keys as well as leaf keys."""
    subject = _label(key, "the private key")
    private, findings = _load_key(key, passphrase, subject)
    findings += _permission_findings(key, subject)
    if private is not None and cert is not None:
        certs, _ = _load_certs(cert, "chain", _label(cert, "the certificate chain"))
        if certs:
            findings += _key_match_findings(certs, private, subject, name or _cn(certs[0]) or "NAME")
    return findings


def _key_match_findings(certs: list[x509.Certificate], key: PrivateKeyTypes, subject: str, name: str) -> list[Finding]:
    if _same_public_key(certs[0], key):
        return []
    if any(_same_public_key(c, key) for c in certs[1:]):
        return []  # reported as chain-order
    # gRPC: server start fails with "Failed to bind" / client "Failed to create security handshaker" (grpc-errors.md n, n2).
    return [
        Finding(
            "key-mismatch",
            _ERROR,
            f"{subject} is not the private key of {_describe(certs[0])}.",
            f"use the key written with the certificate, or re-issue both: {_renew(name)}",
            subject,
        )
    ]


def check_trust_bundle(
    bundle: Source,
    *,
    peer: Source | None = None,
    role: object = None,
    host: str | None = None,
    known_cas: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    expiry_window: dt.timedelta | None = None,
) -> list[Finding]:
    """A CA bundle: not empty, only CAs, none expired; with ``peer`` (a certificate chain), also
    whether that peer's chain leads to one of its CAs (``role`` is the peer's role)."""
    moment = _aware(now)
    subject = _label(bundle, "the trust bundle")
    anchors, findings = _load_certs(bundle, "bundle", subject)
    findings += _bundle_findings(anchors, subject, moment, expiry_window)
    if peer is not None and anchors:
        peer_subject = _label(peer, "the peer chain")
        chain, peer_findings = _load_certs(peer, "chain", peer_subject)
        findings += peer_findings
        if chain:
            leaf = next((c for c in chain if not _is_ca(c)), chain[0])
            pool = _Pool(chain=chain, trusted=anchors, known=_parse_known(known_cas))
            findings += _chain_findings(
                pool, leaf, _role_name(role), moment, expiry_window, peer_subject, _cn(leaf) or "NAME", subject
            )
    return findings


def _bundle_findings(
    anchors: list[x509.Certificate], subject: str, now: dt.datetime, window: dt.timedelta | None
) -> list[Finding]:
    findings: list[Finding] = []
    for ca in anchors:
        if not _is_ca(ca):
            # Pinning a leaf works in gRPC C-core (grpc-errors.md o5) but Go and webpki refuse it.
            findings.append(
                Finding(
                    "trust-bundle-not-ca",
                    _WARNING,
                    f"{subject} holds {_describe(ca)}, which is not a CA certificate.",
                    "keep only CA certificates in a trust bundle",
                    subject,
                )
            )
        findings += _validity_findings(ca, now, window, subject, _cn(ca) or "CA", anchor=True)
        # A trust anchor's own signature is never checked (RFC 5280 §6.1.1(d)), so only its key counts.
        findings += _strength_findings(ca, subject, None, check_signature=not _self_signed(ca))
    return findings


def _parse_known(known_cas: Sequence[bytes]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(pem) for blob in known_cas for pem in _split_pem(blob)]


def _split_pem(blob: bytes) -> list[bytes]:
    return [block for label, block in _blocks(blob) if label == b"CERTIFICATE"]


def check_material(
    cert: Source,
    key: Source | None = None,
    *,
    role: object = None,
    trust: Source | None = None,
    host: str | None = None,
    passphrase: bytes | None = None,
    known_cas: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    expiry_window: dt.timedelta | None = None,
    name: str | None = None,
) -> list[Finding]:
    """Everything that can be checked offline about one identity.

    ``cert``: the certificate chain gRPC loads (leaf first, then intermediates).
    ``key``: its private key. ``role``: ``"server"``, ``"client"`` (or a ``Role``), None to skip
    role checks. ``trust``: the CA bundle the *peer* verifies this certificate with (in a
    one-CA PKI, the same ``ca.pem`` both sides load). ``host``: the name clients dial (server
    role only). ``known_cas``: PEM of CA certificates the PKI knows (its intermediates), used to
    name a missing intermediate. ``name``: the inventory name, used in suggested commands.
    """
    role_name = _role_name(role)
    moment = _aware(now)
    subject = _label(cert, "the certificate chain")
    chain, findings = _load_certs(cert, "chain", subject)
    leaf: x509.Certificate | None = None
    if chain:
        leaves = [c for c in chain if not _is_ca(c)]
        leaf = leaves[0] if leaves else chain[0]
    display = name or (leaf is not None and _cn(leaf)) or "NAME"

    private: PrivateKeyTypes | None = None
    if key is not None:
        private, key_findings = _load_key(key, passphrase, _label(key, "the private key"))
        findings += key_findings + _permission_findings(key, _label(key, "the private key"))
        if private is not None and chain:
            findings += _key_match_findings(chain, private, _label(key, "the private key"), display)
            keyed = [c for c in chain if _same_public_key(c, private)]
            if keyed:
                leaf = keyed[0]
    if leaf is None:
        return findings

    findings += _order_findings(chain, leaf, subject)
    findings += _validity_findings(leaf, moment, expiry_window, subject, display)
    findings += _strength_findings(leaf, subject, _reissue(role_name, display, cert=leaf))
    findings += _profile_findings(leaf, role_name, host, subject, display)

    if trust is not None:
        trust_subject = _label(trust, "the trust bundle")
        anchors, trust_findings = _load_certs(trust, "bundle", trust_subject)
        findings += trust_findings + _bundle_findings(anchors, trust_subject, moment, expiry_window)
        if anchors:
            pool = _Pool(chain=chain, trusted=anchors, known=_parse_known(known_cas))
            findings += _chain_findings(pool, leaf, role_name, moment, expiry_window, subject, display, trust_subject)
            explained = any(f.id in _EXPLAINS_REJECTION and f.severity is not Severity.INFO for f in findings)
            if role_name is not None and not explained:
                ordered = [leaf, *(c for c in chain if c is not leaf)]
                try:
                    check = verify_chain(
                        certificates_pem(ordered),
                        certificates_pem(anchors),
                        role_name,
                        host=_normalise_host(host) if host else None,
                        now=moment,
                    )
                    reason = None if check.ok else _verifier_reason(check.detail)
                except ValueError as exc:  # a name the verifier cannot represent
                    reason = str(exc)
                if reason is not None:
                    findings.append(
                        Finding(
                            "chain-rejected",
                            _ERROR,
                            f"a strict verifier (webpki profile, like Go's) rejects {_describe(leaf)}: {reason}.",
                            _reissue(role_name, display, cert=leaf),
                            subject,
                        )
                    )
    return _dedupe(findings)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[Finding] = set()
    out: list[Finding] = []
    for f in findings:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out
