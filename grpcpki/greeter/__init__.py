"""The mTLS Greeter (helloworld.Greeter): a server and a client that prove certificates work.

Runtime only: no click, no rich. grpc is imported by :mod:`.server` and :mod:`.client` alone,
and only when one of their names is first used (PEP 562 ``__getattr__`` below), so
``grpcpki.greeter.errors`` / ``.identity`` / ``.files`` stay importable without paying for grpc.
Explaining a failed call is :mod:`grpcpki.diagnosis`'s job.

    from grpcpki.greeter import GreeterServer, ServerConfig, GreeterClient, ClientConfig, TlsFiles
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpcpki._lazy import lazy_exports

if TYPE_CHECKING:
    from grpcpki.greeter.client import CallResult, ClientConfig, GreeterClient
    from grpcpki.greeter.errors import GreeterError, Mode
    from grpcpki.greeter.files import TlsMaterial, TlsFiles
    from grpcpki.greeter.identity import AllowList, PeerIdentity, peer_identity
    from grpcpki.greeter.server import (
        CallRecord,
        CertificateReloader,
        GreeterServer,
        GreeterServicer,
        ListenInfo,
        ReloadRecord,
        ServerConfig,
    )

_EXPORTS: dict[str, str] = {
    "CallResult": "client",
    "ClientConfig": "client",
    "GreeterClient": "client",
    "GreeterError": "errors",
    "Mode": "errors",
    "TlsMaterial": "files",
    "TlsFiles": "files",
    "AllowList": "identity",
    "PeerIdentity": "identity",
    "peer_identity": "identity",
    "CallRecord": "server",
    "CertificateReloader": "server",
    "GreeterServer": "server",
    "GreeterServicer": "server",
    "ListenInfo": "server",
    "ReloadRecord": "server",
    "ServerConfig": "server",
}

# A literal list, so linters and type checkers see the re-exports.
__all__ = [
    "AllowList",
    "CallRecord",
    "CallResult",
    "CertificateReloader",
    "ClientConfig",
    "GreeterClient",
    "GreeterError",
    "GreeterServer",
    "GreeterServicer",
    "ListenInfo",
    "Mode",
    "PeerIdentity",
    "ReloadRecord",
    "ServerConfig",
    "TlsFiles",
    "TlsMaterial",
    "peer_identity",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
