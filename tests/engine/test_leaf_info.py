"""CA.issue builds a leaf's CertInfo from the values it signs (no parse of the new DER, issue 10):
it must be exactly what parsing the certificate gives, for every profile, key type and SAN kind."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509

from grpcpki.engine import CA, KeyType, Role
from grpcpki.engine.certs import CertInfo, info_from_certificate
from grpcpki.engine.keys import generate_key

KEY_TYPES = [KeyType.ECDSA_P256, KeyType.ECDSA_P384, KeyType.RSA_2048, KeyType.ED25519]


def _parsed(pem: bytes) -> CertInfo:
    return info_from_certificate(x509.load_pem_x509_certificate(pem))


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=lambda k: k.value)
@pytest.mark.parametrize("intermediate", [False, True], ids=["root", "intermediate"])
def test_issued_info_equals_the_parsed_certificate(key_type: KeyType, intermediate: bool) -> None:
    ca = CA.create("Info CA", key_type=key_type)
    if intermediate:
        ca = ca.create_intermediate("Info Issuing CA", key_type=KeyType.ECDSA_P256)
    cases = [
        ca.issue(Role.SERVER, "localhost", key_type=key_type),  # adds 127.0.0.1 and ::1
        ca.issue(Role.SERVER, "api.example.com", sans=["10.0.0.1", "2001:db8::1", "spiffe://example.org/ns/a/sa/b"],
                 also_client=True),
        ca.issue(Role.CLIENT, "worker", sans=["spiffe://example.org/worker"], key_type=key_type),
        ca.issue(Role.CLIENT, "Client With Spaces", name_as_san=False, sans=["dns.example"], also_server=True),
        # Characters RFC 4514 escapes in the subject's text (section 2.4), and the plain ones it does not.
        ca.issue(Role.CLIENT, '#a+b,c;d<e>f"g\\h', name_as_san=False, sans=["dns.example"]),
        ca.issue(Role.CLIENT, "svc_1@team.example-2", name_as_san=False, sans=["dns.example"]),
        # Named as its CA: the subject equals the issuer (self_signed, by the name test alone).
        ca.issue(Role.CLIENT, str(ca.info.common_name), name_as_san=False, sans=["dns.example"]),
        # A CSR's public key (the CA never sees its private key).
        ca.issue(Role.SERVER, "from-csr", public_key=generate_key(KeyType.RSA_2048).public_key()),
        # A `now` with microseconds and another time zone: the certificate keeps whole UTC seconds.
        ca.issue(Role.SERVER, "tz", now=datetime(2026, 3, 1, 12, 30, 15, 987654, tzinfo=timezone(timedelta(hours=5)))),
    ]
    for leaf in cases:
        assert leaf.info == _parsed(leaf.cert_pem), leaf.name


def test_issued_info_with_a_short_lifetime() -> None:
    ca = CA.create("Short CA", days=10)
    leaf = ca.issue(Role.SERVER, "svc", days=5)
    assert leaf.info == _parsed(leaf.cert_pem)
    assert leaf.info.not_after <= ca.info.not_after
