"""Real stacks to run material through: grpcio in process (BoringSSL) and the openssl CLI.

Used by the tests that prove a finding is an error (a stack fails on it) or that material from
other tools works (every stack accepts it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from support import OPENSSL


def need_openssl() -> str:
    """The openssl CLI; outside CI a test without it skips and says why, in CI it fails."""
    if OPENSSL is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("the openssl CLI is required in CI (apt-get install openssl)")
        pytest.skip("openssl CLI not installed")
    return OPENSSL


def grpcio_call(
    server_chain: bytes,
    server_key: bytes,
    client_trust: bytes,
    *,
    target: str = "localhost",
    server_trust: bytes | None = None,
    client_chain: bytes | None = None,
    client_key: bytes | None = None,
) -> tuple[str, dict[str, list[str]]]:
    """One unary call over TLS between an in-process grpcio server and client: ("OK" or the failure,
    the server's view of the peer (auth_context peer_* keys))."""
    seen: dict[str, list[str]] = {}

    def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.update({k: [v.decode() for v in vs] for k, vs in context.auth_context().items() if k.startswith("peer")})
        return b"ok"

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("t.T", {"M": grpc.unary_unary_rpc_method_handler(handler)})]
    )
    try:
        credentials = grpc.ssl_server_credentials(
            [(server_key, server_chain)], root_certificates=server_trust, require_client_auth=server_trust is not None
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    except (RuntimeError, ValueError) as exc:
        return f"the server does not start: {exc}", seen
    server.start()
    channel = grpc.secure_channel(
        f"{target}:{port}", grpc.ssl_channel_credentials(client_trust, client_key, client_chain)
    )
    try:
        channel.unary_unary("/t.T/M")(b"x", timeout=5)
        return "OK", seen
    except grpc.RpcError as exc:
        return f"{exc.code()}: {exc.details()}", seen  # type: ignore[attr-defined]
    finally:
        channel.close()
        server.stop(0)


def openssl_serves(cert: bytes, key: bytes) -> str:
    """Whether `openssl s_server` (OpenSSL 3, the system's default security level) takes this
    certificate and key: "OK", or its refusal."""
    openssl = need_openssl()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        Path(tmp, "c.pem").write_bytes(cert)
        Path(tmp, "k.pem").write_bytes(key)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        argv = [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", "c.pem", "-key", "k.pem", "-naccept", "1"]
        try:
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=2, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "OK"  # it loaded the pair and sat waiting for a client
        return proc.stderr.strip() or f"exit {proc.returncode}"


def openssl_verify(ca: bytes, cert: bytes, *, crl: bytes | None = None) -> str:
    openssl = need_openssl()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "ca.pem").write_bytes(ca)
        Path(tmp, "c.pem").write_bytes(cert)
        argv = [openssl, "verify", "-CAfile", "ca.pem"]
        if crl is not None:
            Path(tmp, "crl.pem").write_bytes(crl)
            argv += ["-crl_check", "-CRLfile", "crl.pem"]
        proc = subprocess.run([*argv, "c.pem"], cwd=tmp, capture_output=True, text=True, timeout=30)
        return "OK" if proc.returncode == 0 else proc.stdout + proc.stderr
