"""Facts about one certificate that every check asks: its name for people, its CA bit, who signed
it, its SANs, whether a dialed name matches it. Pure functions of ``cryptography`` objects."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from grpcpki.engine.certs import info_from_certificate
from grpcpki.engine.keys import public_key_bytes
from grpcpki.engine.names import San
from grpcpki.engine.verify import name_matches

__all__ = [
    "cn",
    "describe",
    "ext",
    "is_ca",
    "matches_host",
    "name_match",
    "normalise_host",
    "parse_ip",
    "same_public_key",
    "san_list",
    "self_signed",
    "signed_by",
]


def describe(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        return f"CN={cns[0].value!s}"
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def cn(cert: x509.Certificate) -> str | None:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    bc = ext(cert, x509.BasicConstraints)
    return isinstance(bc, x509.BasicConstraints) and bc.ca


def self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and signed_by(cert, cert)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError):
        # SHA-1/MD5 signatures cannot be checked by cryptography >= 45: fall back to the key identifiers.
        aki = ext(cert, x509.AuthorityKeyIdentifier)
        ski = ext(issuer, x509.SubjectKeyIdentifier)
        if isinstance(aki, x509.AuthorityKeyIdentifier) and isinstance(ski, x509.SubjectKeyIdentifier):
            return aki.key_identifier == ski.digest
        return True


def same_public_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    return bool(public_key_bytes(cert.public_key()) == public_key_bytes(key))  # type: ignore[arg-type]


def san_list(cert: x509.Certificate) -> list[str] | None:
    """SANs as ``DNS:x`` / ``IP:x`` / ``URI:x``; None when the certificate has no SAN extension."""
    san = ext(cert, x509.SubjectAlternativeName)
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


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def cn_as_san(cn: str) -> tuple[San, ...]:
    return (San("dns", cn.lower().rstrip(".")),)


def normalise_dns(host: str) -> str:
    host = host.rstrip(".").lower()
    try:
        import idna

        return idna.encode(host, uts46=True).decode("ascii")
    except Exception:  # not IDNA-encodable: compare as given, the match will simply fail
        return host


def normalise_host(host: str) -> str:
    ip = parse_ip(host)
    return str(ip) if ip is not None else normalise_dns(host)


def matches_host(cert_pem: bytes, host: str) -> bool:
    """Would a gRPC client dialing ``host`` accept this certificate's names?

    IP targets match IP SANs only; DNS targets match DNS SANs, and fall back to the CN only
    when the certificate has no SAN at all (docs/failures.md#hostname-mismatch).
    """
    return name_match(x509.load_pem_x509_certificate(cert_pem), host)


def name_match(cert: x509.Certificate, host: str) -> bool:
    info = info_from_certificate(cert)
    if info.has_san_extension:
        return name_matches(normalise_host(host), info.sans)
    # gRPC C-core falls back to the CN only when there is no SAN at all and the target is DNS.
    common = info.common_name
    return parse_ip(host) is None and common is not None and name_matches(normalise_dns(host), cn_as_san(common))


