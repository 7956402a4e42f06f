"""Chain verification with cryptography's RFC 5280 / Web PKI verifier (Rust, not OpenSSL).

It is stricter than BoringSSL about trust anchors (docs/failures.md#pinned-leaf: BoringSSL accepts a
CA:FALSE anchor), which is what we want from a checker: material that passes here passes
in Go, Java and grpc-js too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import verification

from grpcpki.engine.certs import load_certificates
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.names import San
from grpcpki.engine.profiles import Role


@dataclass(frozen=True)
class ChainCheck:
    """Result of verifying a presented chain against a trust bundle for a role (and a name)."""

    ok: bool
    detail: str
    chain_subjects: tuple[str, ...] = ()


def verify_chain(
    chain_pem: bytes,
    trust_pem: bytes,
    role: Role | str,
    *,
    host: str | None = None,
    now: datetime | None = None,
) -> ChainCheck:
    """Verify ``chain_pem`` (leaf first, then intermediates) against the roots in ``trust_pem``.

    For a server, ``host`` is the name a client dials; without it the first SAN is used, which
    checks the chain and usages but not a particular name.
    """
    certs = load_certificates(chain_pem, source="certificate chain")
    roots = load_certificates(trust_pem, source="trust bundle")
    leaf, intermediates = certs[0], certs[1:]
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    builder = verification.PolicyBuilder().store(verification.Store(roots)).time(moment)
    try:
        if Role(role) is Role.SERVER:
            subject = _subject_for(host, leaf)
            if subject is None:
                return ChainCheck(False, "the certificate has no DNS or IP SAN to verify as a server")
            try:
                verifier = builder.build_server_verifier(subject)
                chain = verifier.verify(leaf, intermediates)
            except ValueError:  # raised lazily by the Rust side for a malformed subject name
                return ChainCheck(False, f"{host!r} is neither a DNS name nor an IP address")
        else:
            chain = builder.build_client_verifier().verify(leaf, intermediates).chain
    except verification.VerificationError as exc:
        message = str(exc)
        if "Forbidden public key algorithm" in message or "unsupported name constraint" in message:
            # cryptography's verifier follows the Web PKI profile: no Ed25519 and no URI name
            # constraints, both of which Go and BoringSSL accept. Check those chains link by link.
            return _verify_links(certs, roots, moment, Role(role), host)
        return ChainCheck(False, message)
    subjects = tuple(c.subject.rfc4514_string() for c in chain)
    return ChainCheck(True, "chain verifies: " + " -> ".join(subjects), subjects)


def _subject_for(host: str | None, leaf: x509.Certificate) -> verification.Subject | None:
    if host:
        host = host.strip("[]").rstrip(".").lower()
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in sans:
        if isinstance(name, x509.DNSName) and not name.value.startswith("*."):
            return name
        if isinstance(name, x509.IPAddress):
            return name
    return None


def name_matches(host: str, sans: tuple[San, ...]) -> bool:
    """Would a gRPC client dialing ``host`` accept these SANs? IP and DNS never match each other."""
    try:
        address = str(ipaddress.ip_address(host.strip("[]")))
        return any(s.kind == "ip" and s.value == address for s in sans)
    except ValueError:
        pass
    host = host.lower().rstrip(".")
    for san in sans:
        if san.kind != "dns":
            continue
        if san.value == host:
            return True
        # RFC 6125 6.4.3: '*' matches exactly one whole leftmost label.
        # Like Go and BoringSSL, a wildcard needs two labels under it ('*.com' matches nothing).
        if san.value.count(".") >= 2 and san.value.startswith("*.") and host.split(".", 1)[-1] == san.value[2:]:
            return True
    return False


def _verify_links(
    certs: list[x509.Certificate], roots: list[x509.Certificate], moment: datetime, role: Role, host: str | None
) -> ChainCheck:
    """Path check for chains the Web PKI verifier refuses: signatures, dates, CA flags,
    name constraints, EKU and (for servers) the dialed name."""
    from grpcpki.engine.certs import info_from_certificate

    for cert in certs:
        if not cert.not_valid_before_utc <= moment < cert.not_valid_after_utc:
            return ChainCheck(False, f"{cert.subject.rfc4514_string()} is outside its validity period")
    for child, parent in zip(certs, certs[1:], strict=False):
        if not _signed_by(child, parent):
            return ChainCheck(False, f"{child.subject.rfc4514_string()} is not signed by the next certificate in the chain")
    top = certs[-1]
    anchor = next((root for root in roots if root == top or _signed_by(top, root)), None)
    if anchor is None:
        return ChainCheck(False, "no trusted CA signed this chain")
    chain = certs if anchor == top else [*certs, anchor]
    leaf = info_from_certificate(certs[0])
    for issuer in chain[1:]:
        constraints = info_from_certificate(issuer).name_constraints
        if constraints is not None:
            try:
                constraints.check(leaf.sans)
            except GrpcpkiError as exc:
                return ChainCheck(False, exc.message)
    wanted = "serverAuth" if role is Role.SERVER else "clientAuth"
    if leaf.extended_key_usage and wanted not in leaf.extended_key_usage:
        return ChainCheck(False, f"the certificate's extended key usage lacks {wanted}")
    if role is Role.SERVER and host and not name_matches(host, leaf.sans):
        return ChainCheck(False, f"{host} is not among the certificate's SANs")
    return ChainCheck(True, "chain verifies: " + " -> ".join(c.subject.rfc4514_string() for c in chain))


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        basic = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not basic.ca:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
