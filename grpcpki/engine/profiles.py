"""Certificate profiles as data: one row per kind, each flag with the reason it is set.

Read this table to know exactly what grpcpki puts in a certificate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta


class Role(enum.StrEnum):
    """What a leaf certificate is for."""

    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True)
class Profile:
    is_ca: bool
    key_cert_sign: bool
    crl_sign: bool
    digital_signature: bool
    # Only meaningful for RSA keys: TLS 1.2 RSA key exchange encrypts to the key.
    key_encipherment_for_rsa: bool
    server_auth: bool
    client_auth: bool


ROOT = Profile(
    is_ca=True,  # RFC 5280 4.2.1.9: basicConstraints cA=TRUE, marked critical
    key_cert_sign=True,  # sign certificates
    crl_sign=True,  # sign the CRL written by `grpcpki revoke`
    digital_signature=False,  # the CA never signs TLS handshakes
    key_encipherment_for_rsa=False,
    server_auth=False,  # no EKU on CAs: an EKU on a CA restricts every leaf below it
    client_auth=False,
)
INTERMEDIATE = ROOT

SERVER = Profile(
    is_ca=False,  # CA:FALSE critical: a leaf must never be usable as an issuer
    key_cert_sign=False,
    crl_sign=False,
    digital_signature=True,  # sign the TLS 1.3 CertificateVerify / ECDHE parameters
    key_encipherment_for_rsa=True,  # RSA key exchange in TLS 1.2 (older Java/OpenSSL peers)
    server_auth=True,  # EKU serverAuth: BoringSSL/Go/Java refuse a server cert without it
    client_auth=False,
)
CLIENT = Profile(
    is_ca=False,
    key_cert_sign=False,
    crl_sign=False,
    digital_signature=True,  # sign the client's CertificateVerify
    key_encipherment_for_rsa=False,  # a client never receives an encrypted premaster secret
    server_auth=False,
    client_auth=True,  # EKU clientAuth: Go's RequireAndVerifyClientCert checks it
)

LEAF_PROFILES: dict[Role, Profile] = {Role.SERVER: SERVER, Role.CLIENT: CLIENT}

# Validity defaults: 90 days for leaves (short, renewed automatically, as with ACME),
# ten years for a root that lives offline.
DEFAULT_LEAF_DAYS = 90
DEFAULT_CA_DAYS = 3650
DEFAULT_INTERMEDIATE_DAYS = 1825

# notBefore is backdated so that a peer whose clock runs a little behind still accepts a
# certificate issued a moment ago (docs/failures.md#server-cert-not-yet-valid: 'certificate is not yet valid').
BACKDATE = timedelta(minutes=5)


def leaf_eku_oids(role: Role, *, also_client: bool = False, also_server: bool = False, svid: bool = False) -> list:
    """The EKU OIDs of a leaf. ``svid``: it carries a SPIFFE ID, so it is an X509-SVID, whose
    extendedKeyUsage "when included, fields id-kp-serverAuth and id-kp-clientAuth MUST be set"
    (X509-SVID section 4.4), whatever its role here (docs/spiffe.md)."""
    # Imported here: Role and the defaults above are read by the manifest parser, whose no-op
    # `grpcpki apply` path must not load cryptography.x509 (~20 ms, issue 10).
    from cryptography.x509.oid import ExtendedKeyUsageOID

    profile = LEAF_PROFILES[role]
    oids = []
    if profile.server_auth or also_server or svid:
        oids.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if profile.client_auth or also_client or svid:
        oids.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return oids
