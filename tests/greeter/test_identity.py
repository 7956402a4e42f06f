"""Peer identity from grpc's auth context (shapes measured in docs/failures.md#peer-identity) and --allow."""

from __future__ import annotations

import pytest

from grpcpki.greeter.identity import AllowList, PeerIdentity, peer_identity

SPIFFE = {
    "transport_security_type": [b"ssl"],
    "x509_common_name": [b"client"],
    "x509_subject_alternative_name": [b"spiffe://example.org/ns/default/sa/client"],
    "peer_uri": [b"spiffe://example.org/ns/default/sa/client"],
    "peer_spiffe_id": [b"spiffe://example.org/ns/default/sa/client"],
}
MULTI = {
    "transport_security_type": [b"ssl"],
    "x509_common_name": [b"multi-san-client"],
    "peer_dns": [b"client.example"],
    "peer_uri": [b"spiffe://example.org/ns/default/sa/client"],
    "peer_ip": [b"10.1.2.3"],
}
CN_ONLY = {"transport_security_type": [b"ssl"], "x509_common_name": [b"cn-only-client"]}
NO_CERT = {"transport_security_type": [b"ssl"], "security_level": [b"TSI_PRIVACY_AND_INTEGRITY"]}
PLAIN = {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}


@pytest.mark.parametrize(
    ("context", "display", "has_cert"),
    [
        (SPIFFE, "spiffe://example.org/ns/default/sa/client", True),
        (MULTI, "spiffe://example.org/ns/default/sa/client", True),
        (CN_ONLY, "CN=cn-only-client", True),
        (NO_CERT, "anonymous (no client certificate)", False),
        (PLAIN, "anonymous (plaintext)", False),
    ],
    ids=["spiffe", "multi-san", "cn-only", "tls-no-cert", "plaintext"],
)
def test_peer_identity(context: dict[str, list[bytes]], display: str, has_cert: bool) -> None:
    peer = peer_identity(context)
    assert peer.display == display
    assert peer.has_certificate is has_cert


def test_multi_san_keeps_types_apart() -> None:
    peer = peer_identity(MULTI)
    assert peer.dns == ("client.example",)
    assert peer.ips == ("10.1.2.3",)
    assert peer.spiffe_id == "spiffe://example.org/ns/default/sa/client"


@pytest.mark.parametrize(
    ("patterns", "context", "allowed"),
    [
        ((), NO_CERT, True),  # no list: the handshake already decided
        (("spiffe://example.org/ns/default/sa/client",), SPIFFE, True),
        (("spiffe://example.org/ns/default/sa/other",), SPIFFE, False),
        (("spiffe://example.org/*",), SPIFFE, False),  # URIs are exact, never globs
        (("*.example",), MULTI, True),  # glob on DNS SAN
        (("CLIENT.EXAMPLE",), MULTI, True),  # DNS is case-insensitive
        (("cn-only-*",), CN_ONLY, True),  # glob on CN
        (("CN-ONLY-*",), CN_ONLY, False),  # CN compared exactly
        (("client.example",), NO_CERT, False),
        (("nope", "spiffe://example.org/ns/default/sa/client"), MULTI, True),  # any pattern may match
    ],
)
def test_allow_list(patterns: tuple[str, ...], context: dict[str, list[bytes]], allowed: bool) -> None:
    assert AllowList.of(patterns).permits(peer_identity(context)) is allowed


def test_identity_to_dict() -> None:
    assert PeerIdentity("ssl", uris=("spiffe://a/b",)).to_dict()["identity"] == "spiffe://a/b"
