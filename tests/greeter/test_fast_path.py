"""serve's per-call hot path (issue 10): the certificate read from grpc's raw auth context, the
identity trailer only for a client that asks, the serial parsed once per certificate and looked
up in the CRL on every call. One in-process server for the module; real mTLS on 127.0.0.1."""

from __future__ import annotations

import os
import threading
from concurrent import futures
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from grpcpki.engine import CA
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc
from grpcpki.greeter.files import TlsFiles
from grpcpki.greeter.identity import IDENTITY_REQUEST_HEADER, PEER_IDENTITY_HEADER, AllowList
from grpcpki.greeter.server import CallRecord, GreeterServer, ServerConfig, _raw_auth_context, client_leaf_pem
from greeter_support import Files

ASK = ((IDENTITY_REQUEST_HEADER, "1"),)


class _Server:
    def __init__(self, server: GreeterServer, crl: Path, records: list[CallRecord]) -> None:
        self.server, self.crl, self.records = server, crl, records

    @property
    def target(self) -> str:
        assert self.server.info is not None
        return f"localhost:{self.server.info.port}"


@pytest.fixture(scope="module")
def served(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    crl = tmp_path_factory.mktemp("fast-path") / "crl.pem"
    records: list[CallRecord] = []
    server = GreeterServer(
        ServerConfig(
            listen="127.0.0.1:0",
            files=TlsFiles(files.cert("server"), files.key("server"), files.ca),
            allow=AllowList.of(["spiffe://example.org/web"]),
            crl=crl,
            log_ok_calls="none",
        ),
        on_call=records.append,
        on_reload=lambda record: None,
    )
    server.start()
    try:
        yield _Server(server, crl, records)
    finally:
        server.stop(0)


def _stub(served: _Server, files: Files, client: str) -> tuple[grpc.Channel, Any]:
    credentials = grpc.ssl_channel_credentials(
        files.ca.read_bytes(), files.key(client).read_bytes(), files.cert(client).read_bytes()
    )
    channel = grpc.secure_channel(served.target, credentials, options=[("grpc.use_local_subchannel_pool", 1)])
    return channel, helloworld_pb2_grpc.GreeterStub(channel)


def _trailer(call: Any) -> str | None:
    return next((value for key, value in call.trailing_metadata() or () if key == PEER_IDENTITY_HEADER), None)


def test_the_raw_auth_context_gives_the_certificate_the_public_one_does(files: Files) -> None:
    """If a grpcio release moves cygrpc.auth_context or _rpc_event, serve falls back to the public
    method (still correct, slower); this test says so instead of letting it pass unnoticed."""
    seen: list[tuple[bytes | None, bytes | None, bool]] = []

    class Peek(helloworld_pb2_grpc.GreeterServicer):
        def SayHello(self, request: Any, context: Any) -> Any:  # noqa: N802
            public = context.auth_context().get("x509_pem_cert")
            seen.append((client_leaf_pem(context), public[0] if public else None, hasattr(context, "_rpc_event")))
            return helloworld_pb2.HelloReply(message="hi")

    server = grpc.server(futures.ThreadPoolExecutor(1))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Peek(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(files.key("server").read_bytes(), files.cert("server").read_bytes())],
        root_certificates=files.ca.read_bytes(), require_client_auth=True))
    server.start()
    try:
        credentials = grpc.ssl_channel_credentials(
            files.ca.read_bytes(), files.key("client").read_bytes(), files.cert("client").read_bytes())
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            helloworld_pb2_grpc.GreeterStub(channel).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
    finally:
        server.stop(0)
    fast, public, has_event = seen[0]
    assert _raw_auth_context is not None and has_event, "grpcio moved the raw auth context: update client_leaf_pem"
    assert fast is not None and fast == public
    assert fast.startswith(b"-----BEGIN CERTIFICATE-----") and fast.strip() in files.cert("client").read_bytes()


def test_identity_trailer_only_for_a_client_that_asks(served: _Server, files: Files) -> None:
    channel, stub = _stub(served, files, "client")
    with channel:
        reply, call = stub.SayHello.with_call(helloworld_pb2.HelloRequest(name="go"), timeout=10)
        assert reply.message == "Hello go" and _trailer(call) is None
        _, call = stub.SayHello.with_call(helloworld_pb2.HelloRequest(name="greet"), timeout=10, metadata=ASK)
        assert _trailer(call) == "spiffe://example.org/web"
        # Refusals carry it too, when asked: greet shows whom the server refused.
    channel, stub = _stub(served, files, "intruder")
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            stub.SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10, metadata=ASK)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _trailer(refused.value) == "spiffe://example.org/intruder"


def test_identity_outside_allow_is_refused_on_every_call_of_a_cached_certificate(
    served: _Server, files: Files
) -> None:
    channel, stub = _stub(served, files, "intruder")
    with channel:
        for _ in range(3):  # the verdict is cached per certificate: it must stay a refusal
            with pytest.raises(grpc.RpcError) as refused:
                stub.SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "identity spiffe://example.org/intruder is not allowed" in (refused.value.details() or "")


def test_a_revoke_refuses_the_next_call_on_an_open_channel_and_an_unrevoke_readmits(
    served: _Server, files: Files, ca: CA
) -> None:
    """The serial is parsed once per certificate; the CRL is consulted on every call."""
    serial = int(files.serials["client"], 16)
    channel, stub = _stub(served, files, "client")
    request = helloworld_pb2.HelloRequest(name="x")
    with channel:
        assert stub.SayHello(request, timeout=10).message == "Hello x"  # cached: not revoked
        _write(served.crl, build_crl_pem(ca, [serial]))
        with pytest.raises(grpc.RpcError) as refused:
            stub.SayHello(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert f"serial {files.serials['client']} (spiffe://example.org/web) is revoked" in (refused.value.details() or "")
        assert served.records[-1].revoked is not None and served.records[-1].revoked.serial == serial
        _write(served.crl, build_crl_pem(ca, []))
        assert stub.SayHello(request, timeout=10).message == "Hello x"


def test_concurrent_first_calls_agree(served: _Server, files: Files) -> None:
    """Eight threads racing on a certificate's first calls all get the same answer."""
    served.server._servicer._peers.clear()  # type: ignore[union-attr]
    channel, stub = _stub(served, files, "client")
    answers: list[str] = []
    with channel:
        threads = [threading.Thread(target=lambda: answers.append(
            stub.SayHello(helloworld_pb2.HelloRequest(name="t"), timeout=10).message)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == ["Hello t"] * 8


def build_crl_pem(ca: CA, serials: list[int]) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return ca.sign_crl(builder).public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

