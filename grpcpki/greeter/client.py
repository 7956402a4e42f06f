"""The Greeter client: SayHello over mTLS, TLS or plaintext, with every failure explained.

    from grpcpki.greeter import ClientConfig, GreeterClient, TlsFiles
    with GreeterClient(ClientConfig(target="localhost:50051",
                                    files=TlsFiles(Path("client.crt"), Path("client.key"), Path("ca.crt")))) as c:
        result = c.say_hello("world")
    result.ok, result.reply, result.diagnosis
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass, field

import grpc

from grpcpki.engine.errors import GrpcpkiError, KeyMismatchError
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc
from grpcpki.diagnosis.explain import Diagnosis, explain
from grpcpki.greeter.errors import GreeterError, Mode
from grpcpki.greeter.files import TlsMaterial, TlsFiles, load
from grpcpki.greeter.identity import IDENTITY_REQUEST_HEADER, PEER_IDENTITY_HEADER

# How long a client waits for a certificate/key pair caught mid-replacement to settle:
# grpcpki's renames land microseconds apart; other tools (cp of two files) take longer.
LOAD_RETRIES = 10
LOAD_RETRY_DELAY = 0.02
# grpcpki serve names the identity it read from our certificate only when asked (identity.py).
_ASK_FOR_IDENTITY = ((IDENTITY_REQUEST_HEADER, "1"),)


@dataclass(frozen=True)
class ClientConfig:
    """Everything ``grpcpki greet`` decides before dialing."""

    target: str = "localhost:50051"
    mode: Mode = "mtls"
    files: TlsFiles = field(default_factory=TlsFiles)
    server_name: str | None = None
    timeout: float = 5.0
    new_connection: bool = False


@dataclass(frozen=True)
class CallResult:
    """One SayHello attempt: the reply, or the status and a plain-words diagnosis."""

    seq: int
    ok: bool
    code: str
    latency_ms: float
    reply: str | None = None
    identity: str | None = None
    details: str | None = None
    debug_error: str | None = None
    diagnosis: Diagnosis | None = None
    client_serial: str | None = None

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "seq": self.seq,
            "ok": self.ok,
            "status": self.code,
            "latency_ms": round(self.latency_ms, 3),
            "reply": self.reply,
            "identity_seen_by_server": self.identity,
            "client_serial": self.client_serial,
        }
        if not self.ok:
            data["details"] = self.details
            if self.diagnosis is not None:
                data["kind"] = self.diagnosis.kind
                data["cause"] = self.diagnosis.cause
                data["fix"] = self.diagnosis.fix
                data["certain"] = self.diagnosis.certain
                if self.diagnosis.findings:
                    data["findings"] = list(self.diagnosis.findings)
        return data


def identity_of(material: TlsMaterial | None) -> str | None:
    """The name a server will read from this client's certificate (URI, then DNS, then CN)."""
    if material is None or material.leaf is None:
        return None
    sans = material.leaf.sans
    for kind in ("uri", "dns", "ip"):
        for san in sans:
            if san.kind == kind:
                return san.value
    return f"CN={material.leaf.common_name}" if material.leaf.common_name else material.leaf.subject


class GreeterClient:
    """A channel to a Greeter server, persistent unless ``new_connection`` is set.

    With ``new_connection`` every call re-reads the certificate, key and trust files and dials
    a fresh connection, so a long-running loop follows certificate rotation on both sides.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.material: TlsMaterial | None = None
        self._last_good: TlsMaterial | None = None
        self._channel: grpc.Channel | None = None
        self._stub: helloworld_pb2_grpc.GreeterStub | None = None
        self._used = False  # has the current channel carried a call yet?

    @property
    def trust_description(self) -> str | None:
        ca = self.config.files.ca
        return str(ca) if ca is not None else None

    def _load_settled(self, files: TlsFiles) -> TlsMaterial:
        """Load the files, riding out a rotation caught half-way.

        A renewal replaces key.pem and chain.pem by two atomic renames; a reader between them
        sees a new key beside the old certificate. That is a moment, not a fault: retry briefly,
        then keep the material of the previous connection (as ``serve`` does) rather than fail
        a call. Only a client that never loaded good material reports the mismatch.
        """
        for _ in range(LOAD_RETRIES):
            try:
                return load(files, side="client")
            except KeyMismatchError:
                time.sleep(LOAD_RETRY_DELAY)
        try:
            return load(files, side="client")
        except KeyMismatchError:
            if self._last_good is None:
                raise
            return self._last_good

    def connect(self) -> TlsMaterial | None:
        """Load (and check) the files and open a channel; GrpcpkiError if the files are unusable."""
        self.close()
        cfg = self.config
        credentials: grpc.ChannelCredentials | None = None
        if cfg.mode == "plaintext":
            self.material = None
        else:
            files = cfg.files if cfg.mode == "mtls" else TlsFiles(ca=cfg.files.ca)
            # check_key_pair before grpc: a mismatch would surface only as
            # 'Failed to create security handshaker' at the first call (docs/failures.md#local-credentials-unusable).
            self.material = self._last_good = self._load_settled(files)
            if cfg.mode == "mtls" and self.material.chain_pem is None:
                raise GreeterError(
                    "mTLS needs a client certificate and key",
                    "pass --name CLIENT or --cert/--key, or --tls-only to send none",
                )
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.material.ca_pem,  # None: grpc's bundled public roots
                private_key=self.material.key_pem,
                certificate_chain=self.material.chain_pem,
            )
        options: list[tuple[str, object]] = [
            # A private subchannel pool: otherwise channels with equal arguments may share one
            # connection from grpc's global pool, and "new connection" would not be new.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if cfg.server_name and credentials is not None:
            # Used for both SNI and the hostname check (docs/failures.md#hostname-mismatch).
            options.append(("grpc.ssl_target_name_override", cfg.server_name))
        if credentials is None:
            self._channel = grpc.insecure_channel(cfg.target, options=options)
        else:
            self._channel = grpc.secure_channel(cfg.target, credentials, options=options)
        self._stub = helloworld_pb2_grpc.GreeterStub(self._channel)
        self._used = False
        return self.material

    def say_hello(self, name: str, *, seq: int = 1) -> CallResult:
        """One SayHello. Never raises for RPC failures: they come back as a failed CallResult."""
        if self._stub is None or (self.config.new_connection and self._used):
            try:
                self.connect()
            except GrpcpkiError as exc:
                if self._stub is None and seq == 1:
                    raise
                return CallResult(
                    seq=seq,
                    ok=False,
                    code="NOT_SENT",
                    latency_ms=0.0,
                    details=exc.message,
                    diagnosis=Diagnosis(
                        code="NOT_SENT",
                        kind="local-credentials-unusable",
                        cause=f"this client's files could not be loaded: {exc.message}",
                        fix=exc.hint or "check --cert/--key/--ca",
                    ),
                )
        assert self._stub is not None
        self._used = True
        serial = self.material.leaf.serial_hex if self.material and self.material.leaf else None
        start = time.perf_counter()
        try:
            # wait_for_ready=False (the default, spelled out): with True every TLS failure
            # becomes a bare DEADLINE_EXCEEDED after the full timeout (docs/failures.md#wait-for-ready).
            reply, call = self._stub.SayHello.with_call(
                helloworld_pb2.HelloRequest(name=name), timeout=self.config.timeout, wait_for_ready=False,
                metadata=_ASK_FOR_IDENTITY,
            )
        except grpc.RpcError as exc:
            latency = (time.perf_counter() - start) * 1000
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            details = exc.details() or ""
            return CallResult(
                seq=seq,
                ok=False,
                code=code,
                latency_ms=latency,
                identity=_identity_header(exc),
                details=details,
                debug_error=exc.debug_error_string(),
                diagnosis=explain(
                    code,
                    details,
                    target=self.config.target,
                    mode=self.config.mode,
                    server_name=self.config.server_name,
                    trust=self.trust_description,
                    timeout=self.config.timeout,
                ),
                client_serial=serial,
            )
        latency = (time.perf_counter() - start) * 1000
        return CallResult(
            seq=seq,
            ok=True,
            code="OK",
            latency_ms=latency,
            reply=reply.message,
            identity=_identity_header(call),
            client_serial=serial,
        )

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

    def __enter__(self) -> GreeterClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _identity_header(call: object) -> str | None:
    # grpcpki serve sends it in the trailers; other servers (the Go and Node interop ones, older
    # grpcpki) in the initial metadata: read both.
    for where in ("initial_metadata", "trailing_metadata"):
        try:
            metadata = getattr(call, where)()
        except Exception:  # noqa: BLE001 - a failed call may have no metadata at all
            continue
        for key, value in metadata or ():
            if key == PEER_IDENTITY_HEADER:
                return urllib.parse.unquote(value if isinstance(value, str) else value.decode("ascii", "replace"))
    return None


__all__ = ["CallResult", "ClientConfig", "GreeterClient", "identity_of"]
