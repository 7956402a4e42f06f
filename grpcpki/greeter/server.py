"""The Greeter server: helloworld.Greeter over mTLS, TLS or plaintext, with hot reload.

    from grpcpki.greeter import GreeterServer, ServerConfig, TlsFiles
    server = GreeterServer(ServerConfig(listen="127.0.0.1:0",
                                        files=TlsFiles(Path("server.crt"), Path("server.key"), Path("ca.crt"))))
    info = server.start()          # info.address == "127.0.0.1:41517"
    ...
    server.stop()                  # in-flight calls get ``grace`` seconds to finish

Certificates come from files and are re-read when the files change (see
:class:`CertificateReloader`), so rotating them needs no restart. With ``ServerConfig.crl``,
every call's client certificate is checked against that CRL file (see
:mod:`grpcpki.greeter.crl`), so revoking one needs no restart either.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import grpc

from grpcpki.engine import CertInfo
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc
from grpcpki.greeter.crl import RevocationCheck, Revoked, leaf_serial
from grpcpki.diagnosis.explain import spiffe_as_dns_note
from grpcpki.engine.address import split_target
from grpcpki.greeter.errors import GreeterError, Mode
from grpcpki.greeter.files import TlsMaterial, Stamp, TlsFiles, chains_to_bundle, load, serving_problem, stamp
from grpcpki.greeter.identity import (
    IDENTITY_REQUEST_HEADER,
    PEER_IDENTITY_HEADER,
    AllowList,
    PeerIdentity,
    peer_identity,
)

log = logging.getLogger("grpcpki.greeter")

try:  # see client_leaf_pem
    from grpc._cython.cygrpc import auth_context as _raw_auth_context
except ImportError:  # pragma: no cover - a grpcio that moved it: the public method still works
    _raw_auth_context = None

OkCallLogging = Literal["all", "first", "none"]
# "first" remembers this many identities; later newcomers are counted, not logged, so a flood of
# distinct certificates cannot grow the set without bound.
_MAX_REMEMBERED_IDENTITIES = 10_000
# Peer certificates whose identity and allow-list verdict are kept (bench/serve.py: building them
# per call was a fifth of the servicer's CPU on a persistent channel). Bounded: a server that sees
# more distinct clients than this starts over rather than growing without limit.
_MAX_CACHED_PEERS = 4_096

@dataclass(frozen=True)
class ServerConfig:
    """Everything ``grpcpki serve`` decides before starting."""

    listen: str = "127.0.0.1:50051"
    mode: Mode = "mtls"
    files: TlsFiles = field(default_factory=TlsFiles)
    allow: AllowList = field(default_factory=AllowList)
    grace: float = 5.0
    delay: float = 0.0
    max_workers: int = 8
    # CRL file to check each call's client certificate against (mTLS only); None: no check.
    crl: Path | None = None
    # An explicit --crl must exist at start; the PKI's crl.pem appears with the first revoke.
    crl_must_exist: bool = False
    # Which successful calls reach on_call (or the log): "all"; "first", the first call of each
    # client identity (the rest are only counted, see GreeterServer.call_counts); or "none".
    # Refused calls always do. A log line per call costs more than the call itself
    # (bench/serve.py: a rich line per call made serve 0.55x bare grpcio, issue 10).
    log_ok_calls: OkCallLogging = "all"


@dataclass(frozen=True)
class CallRecord:
    """One SayHello call as the server saw it."""

    peer: str
    identity: PeerIdentity
    name: str
    code: str
    message: str
    revoked: Revoked | None = None  # set when refused because the certificate is in the CRL


@dataclass(frozen=True)
class ReloadRecord:
    """Outcome of noticing changed certificate files: loaded, or kept the old material and why."""

    loaded: bool
    message: str
    leaf: CertInfo | None = None


@dataclass(frozen=True)
class ListenInfo:
    """Where and how a started server listens."""

    host: str
    port: int
    mode: Mode
    material: TlsMaterial | None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


@functools.lru_cache(maxsize=1024)
def _ascii_header(value: str) -> str:
    # Non "-bin" metadata values must be printable ASCII (gRPC HTTP/2 spec); SANs and CNs may not be.
    # Cached: the same few identities call again and again, and this runs on every call.
    return urllib.parse.quote(value, safe=_HEADER_SAFE)


class CertificateReloader:
    """The fetcher for ``grpc.dynamic_ssl_server_credentials``: re-reads files that changed.

    grpc calls it before *every* new incoming handshake (docs/failures.md#dynamic-credentials); returning None keeps the current configuration, and
    existing connections keep their session. So each call is a cheap ``stat`` of three files,
    and a full read + ``check_key_pair`` only when a stamp changed. A half-written or
    mismatched pair is never handed to grpc: the old material stays and the reason is logged
    once per distinct file state (rotation tools write cert and key one after the other).
    """

    def __init__(
        self,
        files: TlsFiles,
        *,
        require_client_cert: bool,
        on_reload: Callable[[ReloadRecord], None] | None = None,
    ) -> None:
        if files.chain is None or files.key is None:
            raise GreeterError("a TLS server needs a certificate and its key", "pass --name, or --cert and --key")
        if require_client_cert and files.ca is None:
            raise GreeterError(
                "mTLS needs the CA that issued the client certificates",
                "pass --ca FILE, or --tls to accept clients without certificates",
            )
        self._files = files
        self._require_client_cert = require_client_cert
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._stamp: Stamp = stamp(files)
        self._failed_stamp: Stamp | None = None
        self.current: TlsMaterial = load(files, side="server")
        # If what serve started with verifies against its own trust bundle (one CA for both sides,
        # as grpcpki lays it out), a reload must too; a server whose certificate comes from another
        # CA than its clients' keeps only the other checks (files.serving_problem).
        self._must_chain = chains_to_bundle(self.current)
        self.reloads = 0

    def configuration(self, material: TlsMaterial | None = None) -> grpc.ServerCertificateConfiguration:
        m = material or self.current
        assert m.chain_pem is not None and m.key_pem is not None
        return grpc.ssl_server_certificate_configuration(
            [(m.key_pem, m.chain_pem)],
            # Server-only TLS passes no roots: with require_client_authentication=False grpc
            # then does not even request a client certificate.
            root_certificates=m.ca_pem if self._require_client_cert else None,
        )

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.configuration(), self, require_client_authentication=self._require_client_cert
        )

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        # Runs on a grpc core thread; an exception here would only be logged by grpc as
        # "Failed fetching new server credentials", so never let one escape.
        try:
            return self._check()
        except Exception as exc:  # noqa: BLE001
            log.exception("certificate reload check failed")
            self._emit(ReloadRecord(False, f"reload check failed: {exc}"))
            return None

    def _check(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            now = stamp(self._files)
            if now == self._stamp or now == self._failed_stamp:
                return None
            try:
                material = load(self._files, side="server")
            except GrpcpkiError as exc:
                self._failed_stamp = now
                reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
                self._emit(ReloadRecord(False, f"certificate files changed but were not loaded: {reason}; "
                                        "still serving the previous certificate"))
                return None
            # Keep the last good material: grpc would take a client-only, expired or foreign
            # certificate and every client would then fail its handshake (issue 9).
            problem = serving_problem(material, current=self.current, must_chain=self._must_chain)
            if problem is not None:
                self._failed_stamp = now
                self._emit(ReloadRecord(False, f"certificate files changed but are unfit to serve: {problem}; "
                                        "still serving the previous certificate"))
                return None
            if self._stamp_settled(now):
                self._stamp = now
            self._failed_stamp = None
            self.current = material
            self.reloads += 1
            assert material.leaf is not None
            self._emit(ReloadRecord(
                True,
                f"reloaded certificate {material.leaf.subject} serial {material.leaf.serial_hex[:16]}, "
                f"expires {material.leaf.not_after:%Y-%m-%d %H:%M}Z",
                material.leaf,
            ))
            return self.configuration(material)

    def _stamp_settled(self, before: Stamp) -> bool:
        # If a file changed while we read it, keep the old stamp so the next handshake re-reads.
        return stamp(self._files) == before

    def _emit(self, record: ReloadRecord) -> None:
        if self._on_reload is not None:
            self._on_reload(record)
        else:
            log.log(logging.INFO if record.loaded else logging.WARNING, record.message)


@dataclass(frozen=True, slots=True)
class _Peer:
    """What one verified client certificate decides, worked out on its first call."""

    identity: PeerIdentity
    display: str
    trailer: tuple[tuple[str, str], ...]
    allowed: bool
    serial: int | None  # None: no revocation check, or a certificate that cannot be parsed (see unreadable)
    unreadable: str | None


def client_leaf_pem(context: grpc.ServicerContext) -> bytes | None:
    """The PEM of the client certificate grpc verified for this call, or None (no certificate).

    ``ServicerContext.auth_context()`` rebuilds grpc's dict with every property name decoded by a
    Python-level helper on each call: ~31,000 of the ~49,000 instructions it costs a call
    (callgrind on bench/serve.py's persistent channel, grpcio 1.85; a bare call is ~385,000). The
    Cython ``cygrpc.auth_context`` it wraps returns the same properties with bytes names, so the
    hot path reads that, and falls back to the public method if a grpcio release moves either
    (tests/greeter/test_fast_path.py proves both give the same certificate).
    """
    rpc_event = getattr(context, "_rpc_event", None)
    if _raw_auth_context is not None and rpc_event is not None:
        properties = _raw_auth_context(rpc_event.call)
        pems = properties.get(b"x509_pem_cert") if properties else None
    else:
        pems = context.auth_context().get("x509_pem_cert")
    return pems[0] if pems else None


class GreeterServicer(helloworld_pb2_grpc.GreeterServicer):
    """SayHello -> "Hello NAME", after checking the caller against the CRL and the allow list."""

    def __init__(
        self,
        allow: AllowList | None = None,
        *,
        delay: float = 0.0,
        on_call: Callable[[CallRecord], None] | None = None,
        revocation: RevocationCheck | None = None,
        log_ok_calls: OkCallLogging = "all",
    ) -> None:
        self._allow = allow or AllowList()
        self._delay = delay
        self._on_call = on_call
        self._revocation = revocation
        self._log_ok_calls = log_ok_calls
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._identities: set[str] = set()
        # Client certificate PEM -> what it decides (_Peer). Keyed by the whole certificate grpc
        # verified, never by the peer address (ports are reused) or the SANs (a revoked certificate
        # and its renewal share them). The identity and serial are functions of the certificate,
        # and the allow list is fixed for the server's life (a new --allow means a restart). The
        # revocation verdict is NOT kept: each call looks the cached serial up in the CRL in force
        # (one stat while the file is unchanged), so a revoke takes effect on the next call.
        self._peers: dict[bytes, _Peer] = {}

    def call_counts(self) -> dict[str, int]:
        """Calls answered so far, by status code ("OK", "PERMISSION_DENIED", ...)."""
        with self._counts_lock:
            return dict(self._counts)

    @property
    def identities_seen(self) -> int:
        """Distinct client identities that called successfully (up to the remembered maximum)."""
        return len(self._identities)

    def _count(self, code: str) -> None:
        with self._counts_lock:
            self._counts[code] = self._counts.get(code, 0) + 1

    def _log_ok(self, key: str) -> bool:
        if self._log_ok_calls == "none":
            return False
        if self._log_ok_calls == "all":
            if len(self._identities) < _MAX_REMEMBERED_IDENTITIES:
                self._identities.add(key)  # only for the count in the exit summary
            return True
        if key in self._identities or len(self._identities) >= _MAX_REMEMBERED_IDENTITIES:
            return False
        with self._counts_lock:
            if key in self._identities:
                return False
            self._identities.add(key)
        return True

    def SayHello(  # noqa: N802 - name fixed by helloworld.proto
        self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> helloworld_pb2.HelloReply:
        # The hot path of a persistent channel: one auth-context read, one dict lookup, one stat
        # of the CRL, one set membership, a counter. Anything else runs once per certificate.
        pem = client_leaf_pem(context)
        peer = self._peers.get(pem) if pem is not None else None
        if peer is None:
            peer = self._admit(pem, context)
        # Only for a client that asks (grpcpki greet does): trailing metadata cost ~3% of a bare
        # call's instructions (callgrind, bench/serve.py), paid by every Go/Java/Node client that
        # never reads it. In the trailers, which go out with the status anyway (refusals
        # included): as initial metadata it cost a batch of its own per call.
        for key, _value in context.invocation_metadata() or ():
            if key == IDENTITY_REQUEST_HEADER:
                context.set_trailing_metadata(peer.trailer)
                break
        revocation = self._revocation
        if revocation is not None and pem is not None and (
            peer.serial is None or peer.serial in revocation.serials()
        ):
            # Before the allow list: a revoked certificate proves no identity at all.
            self._refuse_unrevocable(peer, request.name, context)
        if not peer.allowed:
            identity = peer.identity
            # A SPIFFE ID written as a DNS SAN can never match: say so (docs/failures.md#peer-identity).
            message = f"identity {peer.display} is not allowed to call this server{spiffe_as_dns_note(identity.dns)}"
            self._record(context, identity, request.name, "PERMISSION_DENIED", message)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        if self._delay > 0:
            time.sleep(self._delay)
        reply = f"Hello {request.name}"
        # A successful call is counted, and built into a record (which asks grpc for the peer
        # address) only if it is to be shown.
        if self._log_ok_calls != "all" and (self._log_ok_calls == "none" or peer.display in self._identities):
            with self._counts_lock:
                self._counts["OK"] = self._counts.get("OK", 0) + 1
        elif self._log_ok(peer.display):
            self._record(context, peer.identity, request.name, "OK", reply)
        else:
            self._count("OK")
        return helloworld_pb2.HelloReply(message=reply)

    def _admit(self, pem: bytes | None, context: grpc.ServicerContext) -> _Peer:
        """Decide once what a client certificate means: identity, trailer, allow-list verdict, serial."""
        identity = peer_identity(context.auth_context())
        display = identity.display
        serial: int | None = None
        unreadable: str | None = None
        if pem is not None and self._revocation is not None:
            try:
                serial = leaf_serial(pem)
            except GrpcpkiError as exc:
                unreadable = exc.message
        peer = _Peer(
            identity=identity,
            display=display,
            trailer=((PEER_IDENTITY_HEADER, _ascii_header(display)),),
            allowed=self._allow.permits(identity),
            serial=serial,
            unreadable=unreadable,
        )
        if pem is not None:
            if len(self._peers) >= _MAX_CACHED_PEERS:
                self._peers.clear()
            self._peers[pem] = peer  # a dict store is atomic under the GIL: racing threads agree
        return peer

    def _refuse_unrevocable(self, peer: _Peer, name: str, context: grpc.ServicerContext) -> None:
        """Abort the call of a certificate listed in the CRL, or one whose serial is unknown."""
        assert self._revocation is not None
        if peer.serial is None:
            # grpc verified this certificate but it cannot be parsed here: its revocation status
            # is unknown, and a deny-list check that cannot run refuses (fails closed).
            message = (
                f"cannot read the client certificate ({peer.display}) to check it for revocation: {peer.unreadable}"
            )
            self._record(context, peer.identity, name, "UNAUTHENTICATED", message)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            return  # abort raises; grpc's stubs do not say so
        revoked = self._revocation.revoked(peer.serial)
        if revoked is not None:
            message = revoked.message(peer.display)
            self._record(context, peer.identity, name, "UNAUTHENTICATED", message, revoked)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def _record(
        self,
        context: grpc.ServicerContext,
        identity: PeerIdentity,
        name: str,
        code: str,
        message: str,
        revoked: Revoked | None = None,
    ) -> None:
        self._count(code)
        record = CallRecord(
            peer=context.peer(), identity=identity, name=name, code=code, message=message, revoked=revoked
        )
        if self._on_call is not None:
            self._on_call(record)
        else:
            log.info("%s %s SayHello(%r) -> %s", record.peer, identity.display, name, code)


def worker_pool(max_workers: int, name: str = "greeter") -> futures.ThreadPoolExecutor:
    """grpc's handler pool for serve and ca-server; the caller shuts it down (grpc does not own it).

    Threads start on demand, as grpc's own default does. Starting two up front was tried
    (docs/performance.md, serve, third and fourth passes): under load it seemed to save processes
    from a slow state, but on the quiet machine the issue is judged on, a bare grpcio Greeter with
    two threads started answered at 0.89x-0.94x of the same Greeter started lazily, in every run,
    and serve itself went from 0.86x-0.90x to 0.93x of bare grpcio when it stopped doing so.
    """
    return futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)


def parse_listen(listen: str) -> tuple[str, int]:
    """("127.0.0.1", 50051) from "127.0.0.1:50051" or "[::1]:0"; GreeterError if malformed."""
    host, port = split_target(listen)
    if not host or not port.isdigit() or int(port) > 65535:
        raise GreeterError(
            f"cannot listen on {listen!r}: expected HOST:PORT",
            "e.g. --listen 127.0.0.1:50051, --listen [::1]:0 (port 0 picks a free port)",
        )
    return host, int(port)


def _bind_failure(host: str, port: int) -> GreeterError:
    """Say why add_*_port failed: grpc only says 'Failed to bind to address'.

    Certificates were checked beforehand, so what is left is the address itself; a plain
    socket bind tells which (EADDRINUSE, EADDRNOTAVAIL, EACCES).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except socket.gaierror:
        return GreeterError(f"cannot listen on {host}:{port}: unknown host {host!r}", "use an IP address or a local name")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return GreeterError(
                f"port {port} on {host} is already in use",
                "stop the other process or choose another port (--listen HOST:0 picks a free one)",
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return GreeterError(f"{host} is not an address of this machine", "listen on 127.0.0.1 or 0.0.0.0")
        if exc.errno == errno.EACCES:
            return GreeterError(f"no permission to listen on port {port}", "ports below 1024 need privileges; use a higher port")
        return GreeterError(f"cannot listen on {host}:{port}: {exc.strerror}", "choose another --listen address")
    return GreeterError(
        f"grpc could not listen on {host}:{port}",
        "rerun with GRPC_VERBOSITY=debug to see grpc's reason",
    )


class GreeterServer:
    """A started-on-demand grpc server running :class:`GreeterServicer`."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        on_call: Callable[[CallRecord], None] | None = None,
        on_reload: Callable[[ReloadRecord], None] | None = None,
    ) -> None:
        self.config = config
        self._on_call = on_call
        self._on_reload = on_reload
        self.reloader: CertificateReloader | None = None
        self.revocation: RevocationCheck | None = None
        self._server: grpc.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._servicer: GreeterServicer | None = None
        self.info: ListenInfo | None = None

    def call_counts(self) -> dict[str, int]:
        """Calls answered so far by status code, whatever ``log_ok_calls`` let through."""
        return self._servicer.call_counts() if self._servicer is not None else {}

    @property
    def identities_seen(self) -> int:
        return self._servicer.identities_seen if self._servicer is not None else 0

    def start(self) -> ListenInfo:
        """Check the material, bind, start; raise GrpcpkiError with plain words on failure."""
        cfg = self.config
        host, port = parse_listen(cfg.listen)
        credentials: grpc.ServerCredentials | None = None
        if cfg.mode != "plaintext":
            # Load and check_key_pair BEFORE add_secure_port: grpc reports a key/cert mismatch
            # as 'Failed to bind to address' (docs/failures.md#key-mismatch-at-bind).
            self.reloader = CertificateReloader(
                cfg.files, require_client_cert=cfg.mode == "mtls", on_reload=self._on_reload
            )
            credentials = self.reloader.credentials()
        if cfg.mode == "mtls" and cfg.crl is not None:
            # A damaged CRL is refused here (GreeterError, before binding); later damage keeps
            # the last good CRL in force (RevocationCheck explains why).
            self.revocation = RevocationCheck(cfg.crl, must_exist=cfg.crl_must_exist, on_event=self._crl_event)
        pool = worker_pool(cfg.max_workers)
        server = grpc.server(
            pool,
            # grpc sets SO_REUSEPORT by default on Linux, so a second server on a busy port
            # would silently share it; we want "port in use" instead.
            options=[("grpc.so_reuseport", 0)],
        )
        self._servicer = GreeterServicer(
            cfg.allow, delay=cfg.delay, on_call=self._on_call, revocation=self.revocation,
            log_ok_calls=cfg.log_ok_calls,
        )
        helloworld_pb2_grpc.add_GreeterServicer_to_server(self._servicer, server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            try:
                if credentials is None:
                    bound = server.add_insecure_port(address)
                else:
                    bound = server.add_secure_port(address, credentials)
            except RuntimeError:
                raise _bind_failure(host, port) from None
            if bound == 0:  # older grpcio returned 0 instead of raising
                raise _bind_failure(host, port)
        except GreeterError:
            pool.shutdown(wait=False)
            raise
        server.start()
        self._server, self._pool = server, pool
        self.info = ListenInfo(
            host=host, port=bound, mode=cfg.mode, material=self.reloader.current if self.reloader else None
        )
        return self.info

    def _crl_event(self, loaded: bool, message: str) -> None:
        if self._on_reload is not None:
            self._on_reload(ReloadRecord(loaded, message))
        else:
            log.log(logging.INFO if loaded else logging.WARNING, message)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls; let in-flight calls finish for ``grace`` seconds; block until done."""
        if self._server is None:
            return
        self._server.stop(self.config.grace if grace is None else grace).wait()
        self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)  # grpc does not own the pool it was given
            self._pool = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` passes (False)."""
        if self._server is None:
            return True
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> GreeterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "CallRecord",
    "CertificateReloader",
    "GreeterServer",
    "GreeterServicer",
    "ListenInfo",
    "OkCallLogging",
    "ReloadRecord",
    "ServerConfig",
    "parse_listen",
]
