"""Checks of how certificates hang together: the order of a chain file, each link from the leaf
to a trust anchor (missing intermediate, issuer that is not a CA, untrusted root), and the trust
bundle itself."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509

from grpcpki.diagnosis.certificate import strength_findings, validity_findings
from grpcpki.diagnosis.facts import cn, describe, ext, is_ca, san_list, self_signed, signed_by
from grpcpki.diagnosis.findings import Finding, Severity
from grpcpki.diagnosis.fixes import Owner, issue_command, reissue

__all__ = ["Pool", "bundle_findings", "chain_findings", "order_findings", "revocation_findings", "verifier_reason"]

_ERROR, _WARNING, _INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

@dataclass
class Pool:
    chain: list[x509.Certificate]
    trusted: list[x509.Certificate]
    known: list[x509.Certificate]

    def issuer_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, str] | None:
        for origin, certs in (("trusted", self.trusted), ("chain", self.chain), ("known", self.known)):
            for candidate in certs:
                if candidate is not cert and signed_by(cert, candidate):
                    return candidate, origin
        return None


def order_findings(chain: list[x509.Certificate], leaf: x509.Certificate, subject: str) -> list[Finding]:
    out: list[Finding] = []
    if chain[0] is not leaf:
        # The first certificate is the one paired with the private key (RFC 8446 §4.4.2, BoringSSL
        # SSL_CTX_use_certificate_chain_file).
        out.append(
            Finding(
                "chain-order",
                _ERROR,
                f"{subject} starts with {describe(chain[0])}; the leaf {describe(leaf)} must come first.",
                "put the leaf first, then each issuer in order",
                subject,
            )
        )
        return out
    rest = chain[1:]
    for lower, upper in zip(chain, rest, strict=False):
        if not signed_by(lower, upper) and not self_signed(upper):
            out.append(
                Finding(
                    "chain-order",
                    _WARNING,
                    f"in {subject}, {describe(upper)} does not issue {describe(lower)} just before it.",
                    "list each certificate right after the one it issued",
                    subject,
                )
            )
            break
    for cert in rest:
        if self_signed(cert):
            out.append(
                Finding(
                    "chain-includes-root",
                    _INFO,
                    f"{subject} also carries the root {describe(cert)}; peers ignore it.",
                    None,
                    subject,
                )
            )
    return out


def chain_findings(
    pool: Pool,
    leaf: x509.Certificate,
    now: dt.datetime,
    window: dt.timedelta | None,
    subject: str,
    owner: Owner,
    trust_subject: str,
) -> list[Finding]:
    """Walk from the leaf to a trust anchor, explaining each broken link."""
    out: list[Finding] = []
    current = leaf
    seen: list[x509.Certificate] = [leaf]
    for _ in range(8):
        if any(current == t for t in pool.trusted):
            return out  # the leaf itself is pinned (docs/failures.md#pinned-leaf)
        found = pool.issuer_of(current)
        if found is None:
            issuer = current.issuer.rfc4514_string()
            anchors = ", ".join(describe(t) for t in pool.trusted) or "nothing"
            hint = (
                " If it is an intermediate CA, append it to the chain file after the leaf."
                if not self_signed(current) and len(pool.chain) == 1
                else ""
            )
            out.append(
                Finding(
                    "chain-untrusted",
                    _ERROR,
                    f"{describe(current)} is issued by {issuer}, which is not in {trust_subject} (it holds {anchors}).{hint}",
                    f"trust the CA that issued it, or re-issue it from this CA: {reissue(owner, leaf)}",
                    subject,
                )
            )
            return out
        issuer_cert, origin = found
        if issuer_cert in seen:
            return out
        seen.append(issuer_cert)
        out += _criticality_findings(issuer_cert, subject)
        if origin == "known":
            out.append(
                Finding(
                    "missing-intermediate",
                    _ERROR,
                    f"{subject} lacks the intermediate {describe(issuer_cert)} that issued {describe(current)}; peers cannot build the chain.",
                    f"append the {describe(issuer_cert)} certificate to {subject}",
                    subject,
                )
            )
        ku = ext(issuer_cert, x509.KeyUsage)
        not_ca = not is_ca(issuer_cert) or (isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign)
        if not_ca:
            if origin == "trusted":
                # BoringSSL does not check a trust anchor's basicConstraints (docs/failures.md#pinned-leaf); Go and webpki do.
                out.append(
                    Finding(
                        "issuer-not-ca",
                        _WARNING,
                        f"trust anchor {describe(issuer_cert)} is not a CA (no CA:TRUE/keyCertSign); gRPC C-core accepts it, Go and strict verifiers do not.",
                        reissue(owner, leaf),
                        subject,
                    )
                )
            else:
                # BoringSSL: "invalid CA certificate" or "unable to get local issuer certificate" (docs/failures.md#server-chain-bad-intermediate).
                out.append(
                    Finding(
                        "issuer-not-ca",
                        _ERROR,
                        f"{describe(current)} is issued by {describe(issuer_cert)}, which is not a CA (needs CA:TRUE and keyCertSign).",
                        reissue(owner, leaf),
                        subject,
                    )
                )
        if origin == "trusted":
            return out
        out += validity_findings(issuer_cert, now, window, subject, owner)
        out += strength_findings(issuer_cert, subject, reissue(owner, leaf))
        current = issuer_cert
    return out


def verifier_reason(text: str) -> str:
    for prefix in ("validation failed: ", "candidates exhausted: "):
        text = text.replace(prefix, "")
    return re.sub(r" \(encountered processing <Certificate\(.*\)>\)$", "", text)



def bundle_findings(
    anchors: list[x509.Certificate], subject: str, now: dt.datetime, window: dt.timedelta | None
) -> list[Finding]:
    findings: list[Finding] = []
    for ca in anchors:
        if not is_ca(ca):
            # Pinning a leaf works in gRPC C-core (docs/failures.md#pinned-leaf) but Go and webpki refuse it.
            findings.append(
                Finding(
                    "trust-bundle-not-ca",
                    _WARNING,
                    f"{subject} holds {describe(ca)}, which is not a CA certificate.",
                    "keep only CA certificates in a trust bundle",
                    subject,
                )
            )
        findings += validity_findings(ca, now, window, subject, Owner(cn(ca) or "CA"), anchor=True)
        # A trust anchor's own signature is never checked (RFC 5280 §6.1.1(d)), so only its key counts.
        findings += strength_findings(ca, subject, None, check_signature=not self_signed(ca))
    return findings



def revocation_findings(
    leaf: x509.Certificate, crl: x509.CertificateRevocationList, crl_subject: str, subject: str, owner: Owner
) -> list[Finding]:
    """Is the leaf listed in its issuer's CRL? (RFC 5280 section 6.3: a CRL speaks only for the
    certificates of its own issuer.) A revoked certificate stays revoked: the fix is a new one,
    under the same name, which revocation has freed in a grpcpki inventory."""
    if crl.issuer != leaf.issuer:
        return []
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if entry is None:
        return []
    role = owner.role or "client"
    return [
        Finding(
            "revoked",
            _ERROR,
            f"{describe(leaf)} (serial {leaf.serial_number:x}) is revoked: {crl_subject} lists it since "
            f"{entry.revocation_date_utc:%Y-%m-%d %H:%M} UTC; servers that check this CRL refuse it.",
            f"a revoked certificate cannot be renewed; issue a new one: `{issue_command(role, owner.name, san_list(leaf) or [])}`",
            subject,
        )
    ]


def _criticality_findings(ca: x509.Certificate, subject: str) -> list[Finding]:
    """A CA whose basicConstraints is not critical. RFC 5280 section 4.2.1.9 says MUST be critical
    in CA certificates, and the webpki verifier refuses the chain; grpcio (BoringSSL), Go, grpc-js
    (OpenSSL) and the openssl CLI all accept it (tests/diagnosis/test_other_tools.py). easy-rsa's
    CA is made this way. So: a warning, about the CA, not an error on the leaf."""
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return []
    if bc.critical or not bc.value.ca:
        return []
    return [
        Finding(
            "ca-basic-constraints-not-critical",
            _WARNING,
            f"the CA {describe(ca)} has a basicConstraints extension that is not marked critical (RFC 5280 "
            "4.2.1.9); gRPC stacks accept it, strict verifiers (webpki, rustls) refuse the chain.",
            "when the CA is next rotated, make its basicConstraints critical (grpcpki init-ca does)",
            subject,
        )
    ]
