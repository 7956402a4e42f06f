"""What every check returns: a :class:`Finding` with a stable id, a severity, a sentence and a fix.

A finding's ``id`` is stable (``grpcpki doctor --json`` and ``probe --json`` print it), so scripts
may match on it; the wording of ``message`` may change. :data:`FINDINGS` is the one list of ids,
doctor's and probe's alike, each with its severity and meaning (docs/failures.md, "Finding ids").

"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Union

__all__ = ["EXPLAINS_REJECTION", "FINDINGS", "Finding", "PemKind", "RoleName", "Severity", "Source", "dedupe", "has_errors"]

Source = Union[bytes, str, "os.PathLike[str]"]
"""``bytes`` are file content (PEM or DER), ``str``/``os.PathLike`` are file paths."""
RoleName = Literal["server", "client"]
PemKind = Literal["certificate", "chain", "bundle", "key"]


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One problem (or remark) about one file, certificate or endpoint."""

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


# id -> one-line meaning. Severity is given per finding (some ids are an error in one place and a
# warning in another, e.g. issuer-not-ca on an intermediate vs on a trust anchor).
FINDINGS: dict[str, str] = {
    # reading material (diagnosis.material)
    "file-missing": "the file does not exist",
    "file-unreadable": "the file exists but cannot be read",
    "not-pem": "no PEM block (empty, DER, garbage), or a PEM block that does not parse",
    "wrong-pem-type": "the file holds the wrong kind of PEM object",
    "too-many-objects": "several objects where one belongs",
    "key-encrypted": "the private key is encrypted and no passphrase was given",
    "key-wrong-passphrase": "the passphrase does not decrypt the private key",
    "key-permissions": "the private key file is accessible to group/others",
    "key-weak-kdf": "the private key is encrypted with a weak or legacy KDF (cheap to guess offline)",
    "key-mismatch": "the private key does not belong to the certificate",
    # one certificate (diagnosis.certificate)
    "expired": "a certificate is past notAfter",
    "not-yet-valid": "a certificate is before notBefore",
    "expiring-soon": "a certificate is inside its renewal window",
    "revoked": "the certificate is listed in the CRL of its issuer",
    "cn-only": "no subjectAltName, only a common name",
    "name-mismatch": "the dialed name is not in the server certificate's SANs",
    "spiffe-id-as-dns": "a SPIFFE ID written as a DNS SAN; it must be a URI SAN (X509-SVID section 2)",
    "spiffe-svid": "a SPIFFE certificate breaks a MUST of the X509-SVID / SPIFFE-ID standards (the section is named)",
    "wrong-eku": "extendedKeyUsage lacks the purpose of the role",
    "eku-missing": "no extendedKeyUsage extension",
    "key-usage-digital-signature": "keyUsage lacks digitalSignature",
    "key-usage-key-encipherment": "RSA server keyUsage lacks keyEncipherment",
    "key-usage-ecdsa-encipherment": "keyEncipherment on an ECDSA key (RFC 5480 section 3, RFC 8813)",
    "leaf-can-sign": "a leaf certificate can sign certificates",
    "weak-key": "the key is too weak",
    "weak-signature": "SHA-1 or MD5 signature",
    # chains and bundles (diagnosis.chain)
    "issuer-not-ca": "the issuer is not a CA",
    "ca-basic-constraints-not-critical": "a CA's basicConstraints is not marked critical (RFC 5280 section 4.2.1.9)",
    "missing-intermediate": "the chain file lacks a known intermediate",
    "chain-order": "the chain file is out of order",
    "chain-includes-root": "the chain file carries the root",
    "chain-untrusted": "the chain does not lead to the trust bundle",
    "chain-rejected": "a strict (webpki) verifier rejects the chain",
    "trust-bundle-empty": "the trust bundle is empty",
    "trust-bundle-not-ca": "the trust bundle holds a non-CA certificate",
    "trust-ca-expired": "a CA in the trust bundle is expired",
    # a live endpoint (diagnosis.probe)
    "connection-refused": "nothing is listening on host:port",
    "connect-timeout": "no TCP answer within the timeout",
    "connect-failed": "the address cannot be reached or resolved",
    "handshake-timeout": "TCP connected, but no TLS answer within the timeout",
    "plaintext-server": "the port speaks plaintext HTTP/2 (h2c), not TLS",
    "not-tls": "the port answers, but not with TLS",
    "tls-handshake-failed": "the server aborted the handshake",
    "no-alpn-h2": "the server did not select ALPN h2",
    "server-requires-client-cert": "the server requires a client certificate",
    "server-requests-client-cert": "the server asks for, but does not require, a client certificate",
    "client-cert-unused": "the server never asked for the client certificate",
    "client-cert-rejected-unknown-ca": "the server does not trust the client certificate's CA",
    "client-cert-rejected-expired": "the server says the client certificate is expired",
    "client-cert-rejected-purpose": "the server says the client certificate's EKU is wrong",
    "client-cert-rejected": "the server rejected the client certificate",
    "client-material-unusable": "the client certificate/key cannot be loaded",
}

# Findings that already explain why a verifier refuses the chain; chain-rejected is only
# added when none of these was found.
EXPLAINS_REJECTION = frozenset(
    {
        "expired",
        "not-yet-valid",
        "revoked",
        "cn-only",
        "name-mismatch",
        "spiffe-id-as-dns",
        "wrong-eku",
        "key-usage-digital-signature",
        "leaf-can-sign",
        "issuer-not-ca",
        "ca-basic-constraints-not-critical",
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


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """The findings in order, each once (several checks may reach the same conclusion)."""
    return list(dict.fromkeys(findings))
