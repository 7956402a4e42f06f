"""The Greeter runtime in-process: reload rules, client rotation, start-up errors, lazy grpc."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from greeter_support import Files
from support import assert_threads_end, threads_started_since

from grpcpki.engine import KeyMismatchError
from grpcpki.greeter import ClientConfig, GreeterClient, GreeterError, GreeterServer, ServerConfig, TlsFiles
from grpcpki.greeter.server import ReloadRecord


def copy_set(files: Files, dest: Path, *names: str) -> Files:
    for name in names:
        shutil.copy(files.cert(name), dest / f"{name}.crt")
        shutil.copy(files.key(name), dest / f"{name}.key")
    shutil.copy(files.ca, dest / "ca.crt")
    return Files(dest, files.serials)


def test_client_new_connection_follows_client_rotation_and_server_trust_reload(
    files: Files, tmp_path: Path
) -> None:
    live = copy_set(files, tmp_path, "server", "client")
    records: list[ReloadRecord] = []
    server = GreeterServer(
        ServerConfig(listen="127.0.0.1:0", files=TlsFiles(live.cert("server"), live.key("server"), live.ca)),
        on_reload=records.append,
    )
    info = server.start()
    try:
        client_files = TlsFiles(live.cert("client"), live.key("client"), live.ca)
        with GreeterClient(
            ClientConfig(target=f"localhost:{info.port}", files=client_files, new_connection=True)
        ) as client:
            first = client.say_hello("a", seq=1)
            assert first.ok and first.identity == "spiffe://example.org/web"

            # Rotate the client to a certificate from another CA: refused until the server trusts it.
            shutil.copy(files.cert("rogue"), live.cert("client"))
            shutil.copy(files.key("rogue"), live.key("client"))
            refused = client.say_hello("b", seq=2)
            assert not refused.ok and refused.diagnosis is not None
            assert refused.diagnosis.kind == "server-rejected-client"

            # The server's trust bundle gains the other CA: next new connection is accepted.
            live.ca.write_bytes(files.ca.read_bytes() + files.other_ca.read_bytes())
            accepted = client.say_hello("c", seq=3)
            assert accepted.ok, accepted.diagnosis
            assert accepted.identity == "spiffe://example.org/rogue"
            assert accepted.client_serial == files.serials["rogue"]
        assert [r.loaded for r in records] == [True]
        assert server.reloader is not None and len(server.reloader.current.trusted) == 2
    finally:
        server.stop(0)


def test_client_rides_out_a_pair_caught_mid_rotation(files: Files, tmp_path: Path) -> None:
    live = copy_set(files, tmp_path, "server", "client")
    server = GreeterServer(
        ServerConfig(listen="127.0.0.1:0", files=TlsFiles(live.cert("server"), live.key("server"), live.ca))
    )
    info = server.start()
    try:
        client_files = TlsFiles(live.cert("client"), live.key("client"), live.ca)
        with GreeterClient(
            ClientConfig(target=f"localhost:{info.port}", files=client_files, new_connection=True)
        ) as client:
            assert client.say_hello("a", seq=1).ok
            # A rotation caught between its two renames: new key, old certificate.
            shutil.copy(files.key("rogue"), live.key("client"))
            during = client.say_hello("b", seq=2)
            assert during.ok, during.diagnosis  # the previous, matching pair is used
            assert during.client_serial == files.serials["client"]
        # A client that never had a good pair reports the mismatch instead.
        with pytest.raises(KeyMismatchError):
            GreeterClient(ClientConfig(target=f"localhost:{info.port}", files=client_files)).connect()
    finally:
        server.stop(0)


def test_bad_reload_is_reported_once_and_old_material_kept(files: Files, tmp_path: Path) -> None:
    live = copy_set(files, tmp_path, "server")
    records: list[ReloadRecord] = []
    server = GreeterServer(
        ServerConfig(listen="127.0.0.1:0", files=TlsFiles(live.cert("server"), live.key("server"), live.ca)),
        on_reload=records.append,
    )
    server.start()
    try:
        reloader = server.reloader
        assert reloader is not None
        live.key("server").write_bytes(b"-----BEGIN PRIVATE KEY-----\ntruncat")  # half-written
        assert reloader() is None
        assert reloader() is None  # same file state: not re-read, not re-logged
        assert len(records) == 1 and not records[0].loaded
        assert "still serving the previous certificate" in records[0].message
        assert reloader.current.leaf is not None
        assert reloader.current.leaf.serial_hex == files.serials["server"]
    finally:
        server.stop(0)


def test_start_rejects_mismatched_pair_before_grpc(files: Files) -> None:
    config = ServerConfig(listen="127.0.0.1:0", files=TlsFiles(files.cert("server"), files.key("server2"), files.ca))
    with pytest.raises(KeyMismatchError, match="does not belong to the certificate"):
        GreeterServer(config).start()


def test_start_reports_port_in_use(files: Files) -> None:
    first = GreeterServer(ServerConfig(listen="127.0.0.1:0", mode="plaintext"))
    port = first.start().port
    try:
        with pytest.raises(GreeterError, match=f"port {port} on 127.0.0.1 is already in use"):
            GreeterServer(ServerConfig(listen=f"127.0.0.1:{port}", mode="plaintext")).start()
    finally:
        first.stop(0)


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_listen_address(listen: str) -> None:
    with pytest.raises(GreeterError, match="expected HOST:PORT"):
        GreeterServer(ServerConfig(listen=listen, mode="plaintext")).start()


def test_cli_help_and_error_module_do_not_import_grpc() -> None:
    code = (
        "import sys\n"
        "import grpcpki.greeter.errors, grpcpki.greeter.identity, grpcpki.cli.greeter_cmd\n"
        "from grpcpki.cli import cli\n"
        "for args in (['--help'], ['serve', '--help'], ['greet', '--help']):\n"
        "    try:\n"
        "        cli.main(args=args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('grpc' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")
    assert "Example" in result.stdout  # every command's help has an Example section


def test_handler_threads_start_on_demand_and_end_at_stop() -> None:
    """serve gives grpc a pool of its own, threads started on demand as grpc's default (the
    measured choice: docs/performance.md, serve, fourth pass), and shuts it down at stop: grpc
    does not own the pool it is given, and an in-process server would leave its threads behind."""
    import grpc

    from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc

    before = set(threading.enumerate())
    server = GreeterServer(ServerConfig(listen="127.0.0.1:0", mode="plaintext"))
    info = server.start()
    try:
        assert not threads_started_since(before, "greeter_")
        with grpc.insecure_channel(f"127.0.0.1:{info.port}") as channel:
            reply = helloworld_pb2_grpc.GreeterStub(channel).SayHello(helloworld_pb2.HelloRequest(name="pool"))
        assert reply.message == "Hello pool"
        workers = threads_started_since(before, "greeter_")
        assert workers
    finally:
        server.stop(0)
    assert_threads_end(workers)
