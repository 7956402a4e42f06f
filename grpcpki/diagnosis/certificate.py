"""Checks of one certificate on its own: validity, key and signature strength, and its profile
(SANs, extendedKeyUsage, keyUsage, basicConstraints) against the role it is used for."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from grpcpki.engine.keys import describe_key
from grpcpki.diagnosis.facts import cn, describe, ext, is_ca, name_match, parse_ip, san_list
from grpcpki.diagnosis.findings import Finding, Severity
from grpcpki.diagnosis.fixes import Owner, reissue, renew

__all__ = ["profile_findings", "strength_findings", "validity_findings"]

_ERROR, _WARNING, _INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
_WEAK_HASHES = frozenset({"sha1", "md5"})
_DEFAULT_WINDOW = dt.timedelta(days=30)

def validity_findings(
    cert: x509.Certificate,
    now: dt.datetime,
    window: dt.timedelta | None,
    subject: str,
    owner: Owner,
    *,
    anchor: bool = False,
) -> list[Finding]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    what = f"{describe(cert)}" if subject != describe(cert) else "the certificate"
    if now > end:
        ago = (now - end).days
        if anchor:
            return [
                Finding(
                    "trust-ca-expired",
                    _ERROR,
                    f"trust anchor {describe(cert)} expired on {end:%Y-%m-%d} ({ago} days ago).",
                    "remove it from the bundle; if it is your CA, rotate to a new one",
                    subject,
                )
            ]
        return [
            Finding(
                "expired",
                _ERROR,
                f"{what} expired on {end:%Y-%m-%d %H:%M} UTC ({ago} days ago).",
                renew(owner),
                subject,
            )
        ]
    if now < start:
        # BoringSSL: "certificate is not yet valid" (docs/failures.md#server-cert-not-yet-valid); usually a clock behind on one side.
        return [
            Finding(
                "not-yet-valid",
                _ERROR,
                f"{what} is not valid until {start:%Y-%m-%d %H:%M} UTC; one of the clocks is wrong or it was issued for later.",
                f"check this machine's clock (timedatectl status); if it is right, {renew(owner)}",
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
                renew(owner),
                subject,
            )
        ]
    return []


def strength_findings(
    cert: x509.Certificate, subject: str, fix: str | None, *, check_signature: bool = True
) -> list[Finding]:
    out: list[Finding] = []
    key = cert.public_key()
    what = describe(cert)
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
    elif describe_key(key).startswith("dsa"):
        # TLS 1.3 has no DSA signature scheme (RFC 8446 §4.2.3). Told by the key's type name:
        # cryptography 51 deprecated the dsa module's public names, and reading dsa.DSAPublicKey
        # printed a CryptographyDeprecationWarning on stderr for every certificate checked.
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


def profile_findings(
    cert: x509.Certificate, owner: Owner, host: str | None, subject: str
) -> list[Finding]:
    """SAN, EKU, keyUsage and basicConstraints of a leaf, against its role."""
    out: list[Finding] = []
    role = owner.role
    what = describe(cert)
    sans = san_list(cert)
    if sans is None:
        # Go has ignored the CN since 1.15 (x509: "certificate relies on legacy Common Name field");
        # gRPC C-core falls back to it for DNS targets only (docs/failures.md#hostname-mismatch).
        severity = _WARNING if role == "client" else _ERROR
        common = cn(cert)
        out.append(
            Finding(
                "cn-only",
                severity,
                f"{what} has no subjectAltName; Go clients and IP targets ignore the CN.",
                reissue(owner, cert, host=host or common),
                subject,
            )
        )
    if host is not None and role != "client" and not name_match(cert, host):
        ip = parse_ip(host)
        have = ", ".join(sans) if sans else f"no SAN, CN={cn(cert)}"
        kind = "IP" if ip is not None else "DNS"
        # IP and DNS SANs are not interchangeable (docs/failures.md#hostname-mismatch).
        out.append(
            Finding(
                "name-mismatch",
                _ERROR,
                f"clients dialing {host} look for a {kind} SAN {ip or host}, but {what} has {have}.",
                reissue(owner, cert, host=host, role="server"),
                subject,
            )
        )
    eku = ext(cert, x509.ExtendedKeyUsage)
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
            # BoringSSL: "unsupported certificate purpose" (docs/failures.md#server-cert-wrong-usage, #client-cert-wrong-usage).
            out.append(
                Finding(
                    "wrong-eku",
                    _ERROR,
                    f"{what} is a {role} certificate but its extendedKeyUsage allows {have}, not {purpose}.",
                    reissue(owner, cert),
                    subject,
                )
            )
    ku = ext(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage):
        if not ku.digital_signature:
            # TLS 1.3 CertificateVerify is a signature (RFC 8446 §4.4.3; RFC 5280 §4.2.1.3).
            out.append(
                Finding(
                    "key-usage-digital-signature",
                    _ERROR,
                    f"{what} has keyUsage without digitalSignature, so it cannot sign the TLS handshake.",
                    reissue(owner, cert),
                    subject,
                )
            )
        if role == "server" and isinstance(cert.public_key(), rsa.RSAPublicKey) and not ku.key_encipherment:
            out.append(
                Finding(
                    "key-usage-key-encipherment",
                    _WARNING,
                    f"{what} is an RSA server certificate without keyEncipherment, so TLS 1.2 RSA key exchange fails.",
                    reissue(owner, cert),
                    subject,
                )
            )
        if isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and ku.key_encipherment:
            # RFC 5480 section 3 as updated by RFC 8813 section 3: keyEncipherment MUST NOT be set for an
            # id-ecPublicKey key (nothing is ever encrypted to an ECDSA key). BoringSSL, Go and OpenSSL
            # ignore it, so it is a warning; mkcert and cfssl set it on ECDSA leaves.
            out.append(
                Finding(
                    "key-usage-ecdsa-encipherment",
                    _WARNING,
                    f"{what} has an ECDSA key with keyUsage keyEncipherment, which RFC 5480/RFC 8813 forbid for "
                    "EC keys; strict verifiers may refuse it.",
                    reissue(owner, cert),
                    subject,
                )
            )
    if is_ca(cert) or (isinstance(ku, x509.KeyUsage) and ku.key_cert_sign):
        # RFC 5280 §4.2.1.3/§4.2.1.9: keyCertSign and cA belong to CAs; a leaf key should not mint certificates.
        out.append(
            Finding(
                "leaf-can-sign",
                _WARNING,
                f"{what} is a leaf but may sign certificates (CA:TRUE or keyCertSign).",
                reissue(owner, cert),
                subject,
            )
        )
    return out


# --------------------------------------------------------------------------- chains
