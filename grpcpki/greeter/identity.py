"""Who is calling: the peer identity from grpc's auth context, and the ``--allow`` list.

Pure functions over the ``dict[str, list[bytes]]`` that ``ServicerContext.auth_context()``
returns (keys measured in docs/failures.md#peer-identity), so no grpc import.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PEER_IDENTITY_HEADER = "grpcpki-peer-identity"
"""Metadata key carrying the identity the server read from the caller's certificate.

grpc's Python client cannot see the handshake (docs/failures.md#peer-identity: a Call exposes
no auth context), so the Greeter server tells the client who it thinks the client is: grpcpki
serve in the trailers, the Go and Node interop servers in the initial metadata.
"""

IDENTITY_REQUEST_HEADER = "grpcpki-want-peer-identity"
"""Request metadata key (value ``1``) with which a client asks ``grpcpki serve`` for
:data:`PEER_IDENTITY_HEADER`. ``grpcpki greet`` sends it; a client that does not gets no such
trailer and pays nothing for it (docs/greeter.md#peer-identity-header, bench/serve.py).
"""


@dataclass(frozen=True)
class PeerIdentity:
    """What the server knows about a caller after the handshake.

    ``transport`` is ``"ssl"`` or ``"insecure"``; the tuples are empty when the caller sent no
    certificate (server-only TLS) or spoke plaintext.
    """

    transport: str
    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    common_name: str | None = None

    @property
    def has_certificate(self) -> bool:
        return bool(self.uris or self.dns or self.ips or self.common_name)

    @property
    def spiffe_id(self) -> str | None:
        return next((u for u in self.uris if u.startswith("spiffe://")), None)

    @property
    def display(self) -> str:
        """The one name to show: SPIFFE ID / URI first, then DNS, then CN (like peer_identity_key)."""
        if self.uris:
            return self.uris[0]
        if self.dns:
            return self.dns[0]
        if self.common_name:
            return f"CN={self.common_name}"
        if self.ips:
            return self.ips[0]
        if self.transport == "insecure":
            return "anonymous (plaintext)"
        return "anonymous (no client certificate)"

    def names(self) -> tuple[str, ...]:
        """Every identity the certificate carries, for logs."""
        cn = (f"CN={self.common_name}",) if self.common_name else ()
        return self.uris + self.dns + self.ips + cn

    def to_dict(self) -> dict[str, object]:
        return {
            "identity": self.display,
            "transport": self.transport,
            "uris": list(self.uris),
            "dns": list(self.dns),
            "ips": list(self.ips),
            "common_name": self.common_name,
        }


def _strings(values: Sequence[bytes] | None) -> tuple[str, ...]:
    return tuple(v.decode("utf-8", "replace") for v in values or ())


def peer_identity(auth_context: Mapping[str, Sequence[bytes]]) -> PeerIdentity:
    """Build a :class:`PeerIdentity` from ``context.auth_context()``.

    Uses ``peer_uri`` / ``peer_dns`` / ``peer_ip`` (split by SAN type) rather than
    ``peer_identities()``, which mixes every SAN type in one list (docs/failures.md#peer-identity).
    """
    transport = (_strings(auth_context.get("transport_security_type")) or ("unknown",))[0]
    cns = _strings(auth_context.get("x509_common_name"))
    return PeerIdentity(
        transport=transport,
        uris=_strings(auth_context.get("peer_uri")),
        dns=_strings(auth_context.get("peer_dns")),
        ips=_strings(auth_context.get("peer_ip")),
        common_name=cns[0] if cns else None,
    )


@dataclass(frozen=True)
class AllowList:
    """Which verified identities may call.

    A pattern with ``://`` is a URI (SPIFFE ID) compared exactly: a glob there could let
    ``spiffe://example.org/*`` match across path segments and trust domains' intent.
    Anything else is an fnmatch glob matched against DNS SANs (case-insensitively, as DNS
    is) and the CN (exactly). An empty list allows every caller the handshake let in.
    """

    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: Iterable[str]) -> AllowList:
        return cls(tuple(p.strip() for p in patterns if p.strip()))

    def permits(self, peer: PeerIdentity) -> bool:
        if not self.patterns:
            return True
        for pattern in self.patterns:
            if "://" in pattern:
                if pattern in peer.uris:
                    return True
                continue
            if any(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for name in peer.dns):
                return True
            if peer.common_name is not None and fnmatch.fnmatchcase(peer.common_name, pattern):
                return True
        return False


__all__ = ["IDENTITY_REQUEST_HEADER", "PEER_IDENTITY_HEADER", "AllowList", "PeerIdentity", "peer_identity"]
