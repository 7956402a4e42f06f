"""X509-SVID rules: anyone's SPIFFE material checked against the SPIFFE standards, section by section.

The rules are the MUST / MUST NOT statements of ``standards/SPIFFE-ID.md`` and
``standards/X509-SVID.md`` (github.com/spiffe/spiffe) that a certificate can break, one row of
:data:`RULES` each. A certificate is held to them when it claims a SPIFFE ID (a ``spiffe://``
URI SAN, or one written by mistake as a DNS SAN); its issuers are held to the signing-certificate
rules. ``grpcpki issue`` satisfies every rule (tests/diagnosis/test_spiffe.py runs the same table
over what it issues); docs/spiffe.md lists them and where grpcpki goes further.

Severity: an error where a gRPC stack loses the identity (grpcio reports no ``peer_spiffe_id``
for more than one URI SAN, for a SPIFFE ID without a path, or for one written as a DNS SAN,
docs/failures.md#peer-identity), a warning for the other rules, which the TLS handshake itself
does not check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from grpcpki.diagnosis.facts import describe, ext, is_ca
from grpcpki.diagnosis.findings import Finding, Severity
from grpcpki.engine.errors import InvalidNameError
from grpcpki.engine.names import validate_spiffe_id

__all__ = ["RULES", "Rule", "spiffe_findings", "spiffe_ids"]

Applies = Literal["leaf", "signing"]


@dataclass(frozen=True)
class Rule:
    """One MUST / MUST NOT of the SPIFFE standards that a certificate can break."""

    id: str
    section: str  # "X509-SVID 4.3", "SPIFFE-ID 2.1"
    applies: Applies
    must: str  # the requirement, in the standard's words
    severity: Severity
    broken: Callable[[x509.Certificate], str | None]  # None when kept, else what is wrong


def spiffe_ids(cert: x509.Certificate) -> list[str]:
    """The ``spiffe://`` URI SANs of a certificate."""
    san = ext(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return []
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.lower().startswith("spiffe://")]


def _uris(cert: x509.Certificate) -> list[str]:
    san = ext(cert, x509.SubjectAlternativeName)
    return san.get_values_for_type(x509.UniformResourceIdentifier) if isinstance(san, x509.SubjectAlternativeName) else []


def _key_usage(cert: x509.Certificate) -> x509.Extension[x509.KeyUsage] | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return None


def _path(spiffe_id: str) -> str:
    return spiffe_id[len("spiffe://") :].partition("/")[2]


def _syntax(cert: x509.Certificate) -> str | None:
    for value in spiffe_ids(cert):
        try:
            validate_spiffe_id(value)
        except InvalidNameError as exc:
            return exc.message
    return None


def _one_uri(cert: x509.Certificate) -> str | None:
    uris = _uris(cert)
    return f"it has {len(uris)} URI SANs ({', '.join(uris)})" if len(uris) > 1 else None


def _leaf_path(cert: x509.Certificate) -> str | None:
    rootless = [i for i in spiffe_ids(cert) if not _path(i).strip("/")]
    return f"{rootless[0]} has no path" if rootless else None


def _critical_san_without_subject(cert: x509.Certificate) -> str | None:
    if len(cert.subject) > 0:
        return None
    try:
        critical = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    except x509.ExtensionNotFound:
        return None
    return None if critical else "its Subject is empty and its SAN extension is not critical"


def _leaf_ca_false(cert: x509.Certificate) -> str | None:
    return "basicConstraints says cA=TRUE" if is_ca(cert) else None


def _ku_critical(cert: x509.Certificate) -> str | None:
    ku = _key_usage(cert)
    if ku is None:
        return "it has no keyUsage extension"
    return None if ku.critical else "its keyUsage extension is not critical"


def _leaf_digital_signature(cert: x509.Certificate) -> str | None:
    ku = _key_usage(cert)
    return "keyUsage lacks digitalSignature" if ku is not None and not ku.value.digital_signature else None


def _leaf_no_signing(cert: x509.Certificate) -> str | None:
    ku = _key_usage(cert)
    if ku is None:
        return None
    bits = [n for n, on in (("keyCertSign", ku.value.key_cert_sign), ("cRLSign", ku.value.crl_sign)) if on]
    return f"keyUsage sets {' and '.join(bits)}" if bits else None


def _leaf_eku_both(cert: x509.Certificate) -> str | None:
    eku = ext(cert, x509.ExtendedKeyUsage)
    if not isinstance(eku, x509.ExtendedKeyUsage):
        return None  # "Leaf SVIDs SHOULD include this extension": absent is allowed
    missing = [n for n, oid in (("serverAuth", ExtendedKeyUsageOID.SERVER_AUTH), ("clientAuth", ExtendedKeyUsageOID.CLIENT_AUTH))
               if oid not in eku]
    return f"extendedKeyUsage lacks {' and '.join(missing)}" if missing else None


def _signing_no_path(cert: x509.Certificate) -> str | None:
    with_path = [i for i in spiffe_ids(cert) if _path(i)]
    return f"{with_path[0]} has a path" if with_path else None


def _signing_ca_true(cert: x509.Certificate) -> str | None:
    return None if is_ca(cert) else "basicConstraints does not say cA=TRUE"


def _signing_key_cert_sign(cert: x509.Certificate) -> str | None:
    ku = _key_usage(cert)
    return "keyUsage lacks keyCertSign" if ku is not None and not ku.value.key_cert_sign else None


_E, _W = Severity.ERROR, Severity.WARNING
RULES: tuple[Rule, ...] = (
    Rule("spiffe-id-syntax", "SPIFFE-ID 2, 2.1, 2.3", "leaf",
         "MUST use the spiffe scheme, a non-zero trust domain, no query or fragment; userinfo and port MUST NOT be "
         "set; a trust domain is at most 255 bytes", _W, _syntax),
    Rule("one-uri-san", "X509-SVID 2", "leaf", "An X.509 SVID MUST contain exactly one URI SAN", _E, _one_uri),
    Rule("leaf-path", "X509-SVID 3.1", "leaf", "Leaf certificate SPIFFE IDs MUST have a non-root path component",
         _E, _leaf_path),
    Rule("critical-san-without-subject", "X509-SVID 3.1", "leaf",
         "the URI SAN extension MUST be marked as critical if Subject is omitted", _W, _critical_san_without_subject),
    Rule("leaf-ca-false", "X509-SVID 4.1", "leaf", "leaf certificates MUST set the cA field to false", _W, _leaf_ca_false),
    Rule("key-usage-critical", "X509-SVID 4.3", "leaf",
         "The key usage extension MUST be set on all SVIDs, and MUST be marked critical", _W, _ku_critical),
    Rule("leaf-digital-signature", "X509-SVID 4.3", "leaf", "Leaf SVIDs MUST set digitalSignature", _W,
         _leaf_digital_signature),
    Rule("leaf-no-cert-sign", "X509-SVID 4.3", "leaf", "Leaf SVIDs MUST NOT set keyCertSign or cRLSign", _W,
         _leaf_no_signing),
    Rule("leaf-eku-both", "X509-SVID 4.4", "leaf",
         "When included, fields id-kp-serverAuth and id-kp-clientAuth MUST be set", _W, _leaf_eku_both),
    Rule("signing-no-path", "X509-SVID 3.2", "signing",
         "If present, the SPIFFE ID of a signing certificate MUST NOT have a path component", _W, _signing_no_path),
    Rule("signing-ca-true", "X509-SVID 4.1", "signing", "Signing certificates MUST set the cA field to true", _W,
         _signing_ca_true),
    Rule("signing-key-usage-critical", "X509-SVID 4.3", "signing",
         "The key usage extension MUST be set on all SVIDs, and MUST be marked critical", _W, _ku_critical),
    Rule("signing-key-cert-sign", "X509-SVID 4.3", "signing", "SVID signing certificates MUST set keyCertSign", _W,
         _signing_key_cert_sign),
)


def _dns_written_ids(cert: x509.Certificate) -> list[str]:
    san = ext(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return []
    return [d for d in san.get_values_for_type(x509.DNSName) if d.lower().startswith("spiffe:")]


def spiffe_findings(
    leaf: x509.Certificate, issuers: Sequence[x509.Certificate], subject: str, fix: str
) -> list[Finding]:
    """The X509-SVID rules ``leaf`` (and ``issuers``, the signing certificates above it) break,
    when the leaf claims a SPIFFE ID. ``fix`` is the reissue command for the leaf."""
    out: list[Finding] = []
    what = describe(leaf)
    as_dns = _dns_written_ids(leaf)
    for value in as_dns:
        # cfssl writes every `hosts` entry it cannot parse as an IP or email as a DNS SAN.
        out.append(
            Finding(
                "spiffe-id-as-dns",
                _E,
                f"{what} carries the SPIFFE ID {value} as a DNS SAN; it must be a URI SAN (X509-SVID 2), so no gRPC "
                "stack sees it as a SPIFFE identity (grpcio reports it as peer_dns, with no peer_spiffe_id).",
                fix,
                subject,
            )
        )
    if not spiffe_ids(leaf) and not as_dns:
        return out
    for rule in RULES:
        for cert in [leaf] if rule.applies == "leaf" else issuers:
            problem = rule.broken(cert)
            if problem is None:
                continue
            holder = what if cert is leaf else f"signing certificate {describe(cert)}"
            out.append(
                Finding(
                    "spiffe-svid",
                    rule.severity,
                    f"{holder} breaks {rule.section} ({rule.must}): {problem}.",
                    fix if cert is leaf else None,
                    subject,
                )
            )
    return out
