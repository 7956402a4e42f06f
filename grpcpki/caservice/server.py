"""The CA service (``grpcpki ca-server``): grpcpki.ca.v1.CertificateAuthority over TLS.

    from grpcpki.caservice.server import CaServer, CaServerConfig
    server = CaServer(CaServerConfig(listen="127.0.0.1:0", enroll_listen="127.0.0.1:0", files=TlsFiles(...)),
                      open_pki=lambda: Pki.open("pki"))
    server.start(); ...; server.stop()

Two listeners, one server. gRPC Python offers a server either "require and verify a client
certificate" or "do not request one" (grpc/_cython/_cygrpc/credentials.pyx.pxi maps
``require_client_auth=False`` to GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE; there is no "request
but allow none"). So ``listen`` is mTLS (every RPC; Renew authenticates by the certificate the
caller presents) and ``enroll_listen`` is server-side TLS only (Enroll, GetTrustBundle, GetCRL: a
workload without a certificate yet; the token authenticates it). Renew on the TLS-only port sees
no certificate and is refused with UNAUTHENTICATED.

Stateless: every request opens the PKI on its worker thread (one :class:`Pki` per thread,
database connections are per-thread) and all state lives in the store, under its lock and
transaction; nothing is remembered between calls but a copy of the newest CRL, checked
against the inventory's CRL number on every GetCRL. So replicas need no coordination of ours:
on separate machines each has its own PKI directory (the CA certificate and key, or its token
URI) on one shared PostgreSQL inventory, whose advisory writer lock and constraints decide
every race (docs/team.md). The server's own certificate files are re-read when they change,
like ``grpcpki serve``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar

import grpc
from sqlalchemy import exc as sa_exc

from grpcpki.caservice._proto import ca_pb2, ca_pb2_grpc
from grpcpki.caservice.client import DATABASE_UNREACHABLE
from grpcpki.engine.enrollment import EnrollmentError, Issued, Policy, enroll, renew_presented, trust_bundle
from grpcpki.engine.errors import DatabaseUnavailableError, GrpcpkiError, LockTimeoutError
from grpcpki.engine.pki import Pki
from grpcpki.engine.revocation import CrlCache
from grpcpki.greeter.files import TlsFiles
from grpcpki.greeter.server import CertificateReloader, ReloadRecord, _bind_failure, parse_listen, worker_pool

log = logging.getLogger("grpcpki.caservice")


@dataclass(frozen=True)
class CaServerConfig:
    listen: str  # mTLS: all RPCs
    files: TlsFiles  # the server's own chain and key, and the CA bundle for client certificates
    enroll_listen: str | None = None  # server-side TLS only: Enroll, GetTrustBundle, GetCRL
    policy: Policy = field(default_factory=Policy)
    replica: str = ""
    max_workers: int = 16
    grace: float = 5.0


@dataclass(frozen=True)
class IssueEvent:
    """One answered Enroll/Renew, for the server's log line."""

    method: str
    peer: str
    ok: bool
    message: str


_T = TypeVar("_T")
# What SQLAlchemy raises when the DBAPI connection is gone (psycopg's AdminShutdown on a server
# restart is an OperationalError, a closed connection an InterfaceError); never a constraint.
_CONNECTION_LOST = (sa_exc.OperationalError, sa_exc.InterfaceError)


class DatabaseUnreachable(Exception):
    """The shared inventory's database is still unreachable after reconnecting once."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{DATABASE_UNREACHABLE}: {detail} (check the database server; "
                         "this replica reconnects on the next call)")


class CertificateAuthorityServicer(ca_pb2_grpc.CertificateAuthorityServicer):
    def __init__(
        self, open_pki: Callable[[], Pki], config: CaServerConfig, on_event: Callable[[IssueEvent], None] | None = None
    ) -> None:
        self._open_pki = open_pki
        self._config = config
        self._local = threading.local()
        self._on_event = on_event
        self._crls = CrlCache()

    def _pki(self) -> Pki:
        pki: Pki | None = getattr(self._local, "pki", None)
        if pki is None:
            pki = self._open_pki()
            self._local.pki = pki
        return pki

    def _with_pki(self, action: Callable[[Pki], _T]) -> _T:
        """``action`` on this thread's Pki; once more on a freshly opened one if the database
        connection it held was lost. Each worker thread keeps one connection for its life: after
        a PostgreSQL restart or failover every one of them is dead, and without this the replica
        answered UNKNOWN on every thread until it was restarted. A lost connection means the
        transaction did not commit (or, if it died in COMMIT, the retry finds the token spent),
        so the retry never issues twice."""
        try:
            return action(self._pki())
        except (*_CONNECTION_LOST, DatabaseUnavailableError):
            self._drop_pki()
        try:
            return action(self._pki())
        except DatabaseUnavailableError as exc:
            # Still down when reopening: the database, not this replica, is the cause.
            raise DatabaseUnreachable(exc.message.partition(": ")[2] or exc.message) from None
        except _CONNECTION_LOST as exc:
            self._drop_pki()
            raise DatabaseUnreachable(str(getattr(exc, "orig", exc)).strip().splitlines()[0]) from None

    def _drop_pki(self) -> None:
        pki: Pki | None = getattr(self._local, "pki", None)
        self._local.pki = None
        if pki is not None:
            pki.inventory.close()  # a dead connection: closing only releases what is left of it

    def Enroll(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - name fixed by ca.proto
        return self._issue("Enroll", context, lambda pki: enroll(
            pki, token=request.token, csr_pem=request.csr_pem, kind=request.kind, policy=self._config.policy,
            replica=self._config.replica, peer=context.peer(),
        ))

    def Renew(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        presented = context.auth_context().get("x509_pem_cert", [b""])[0]
        return self._issue("Renew", context, lambda pki: renew_presented(
            pki, presented_pem=presented, csr_pem=request.csr_pem, policy=self._config.policy,
            replica=self._config.replica, peer=context.peer(),
        ))

    def GetTrustBundle(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            bundle, issuing = self._with_pki(trust_bundle)
        except DatabaseUnreachable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except GrpcpkiError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, _text(exc))
        return ca_pb2.TrustBundle(trust_bundle_pem=bundle, issuing_ca_pem=issuing)

    def GetCRL(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        # From the inventory, not this replica's crl.pem: a revocation made through another
        # machine is in the database's newest CRL at once (engine/revocation.py). No CA key needed.
        try:
            data = self._with_pki(self._crls.current)
        except DatabaseUnreachable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except GrpcpkiError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read the CRL: {_text(exc)}")
        return ca_pb2.CRL(crl_pem=data)

    def _issue(self, method: str, context: grpc.ServicerContext, action: Callable[[Pki], Issued]) -> Any:
        peer = context.peer()
        try:
            issued = self._with_pki(action)
        except DatabaseUnreachable as exc:
            self._event(IssueEvent(method, peer, False, str(exc)))
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except EnrollmentError as exc:
            self._event(IssueEvent(method, peer, False, _text(exc)))
            context.abort(getattr(grpc.StatusCode, exc.status), _text(exc))
        except LockTimeoutError as exc:
            self._event(IssueEvent(method, peer, False, _text(exc)))
            context.abort(grpc.StatusCode.UNAVAILABLE, _text(exc))
        except GrpcpkiError as exc:
            # Names refused by the rules of `issue`, NAME taken, the CA's name constraints...
            self._event(IssueEvent(method, peer, False, _text(exc)))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, _text(exc))
        self._event(IssueEvent(method, peer, True, f"issued {issued.kind} {issued.name} serial {issued.serial}"))
        return ca_pb2.CertificateResponse(
            name=issued.name, kind=issued.kind, serial=issued.serial, chain_pem=issued.chain_pem,
            trust_bundle_pem=issued.trust_bundle_pem,
            not_before_unix=int(issued.not_before.astimezone(UTC).timestamp()),
            not_after_unix=int(issued.not_after.astimezone(UTC).timestamp()),
        )

    def _event(self, event: IssueEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
        else:
            log.log(logging.INFO if event.ok else logging.WARNING, "%s from %s: %s", event.method, event.peer,
                    event.message)


def _text(exc: GrpcpkiError) -> str:
    # gRPC status messages travel as one header value; keep the hint, on the same line.
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


@dataclass(frozen=True)
class Bound:
    mtls_port: int
    tls_port: int | None


class CaServer:
    def __init__(
        self, config: CaServerConfig, open_pki: Callable[[], Pki], *,
        on_event: Callable[[IssueEvent], None] | None = None,
        on_reload: Callable[[ReloadRecord], None] | None = None,
    ) -> None:
        self.config = config
        self._open_pki = open_pki
        self._on_event = on_event
        self._on_reload = on_reload
        self._server: grpc.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self.bound: Bound | None = None

    def start(self) -> Bound:
        cfg = self.config
        # Both listeners read the same files; each keeps the last good material on a bad reload.
        mtls = CertificateReloader(cfg.files, require_client_cert=True, on_reload=self._on_reload)
        tls = (CertificateReloader(cfg.files, require_client_cert=False, on_reload=self._on_reload)
               if cfg.enroll_listen else None)
        # A pool of our own, as serve's: stop() shuts it down, grpc would not (worker_pool).
        pool = worker_pool(cfg.max_workers, "ca-server")
        server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])  # "port in use", not a shared port
        ca_pb2_grpc.add_CertificateAuthorityServicer_to_server(
            CertificateAuthorityServicer(self._open_pki, cfg, self._on_event), server
        )
        try:
            mtls_port = _bind(server, cfg.listen, mtls.credentials())
            tls_port = _bind(server, cfg.enroll_listen, tls.credentials()) if cfg.enroll_listen and tls else None
        except GrpcpkiError:
            pool.shutdown(wait=False)
            raise
        server.start()
        self._server, self._pool = server, pool
        self.bound = Bound(mtls_port, tls_port)
        return self.bound

    def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            self._server.stop(self.config.grace if grace is None else grace).wait()
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)  # grpc does not own the pool it was given
            self._pool = None

    def wait(self, timeout: float | None = None) -> bool:
        if self._server is None:
            return True
        return bool(self._server.wait_for_termination(timeout))


def _bind(server: grpc.Server, listen: str, credentials: grpc.ServerCredentials) -> int:
    host, port = parse_listen(listen)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, credentials)
    except RuntimeError:
        raise _bind_failure(host, port) from None
    if bound == 0:
        raise _bind_failure(host, port)
    return int(bound)


__all__ = ["Bound", "CaServer", "CaServerConfig", "CertificateAuthorityServicer", "IssueEvent"]
