"""What serve's live-reload and revocation machinery costs, as ratios against plain grpcio.

Three servers run in this process on 127.0.0.1, each answering the same SayHello:

  baseline   grpc.ssl_server_credentials (static), the plain grpcio servicer
  reload     grpcpki's GreeterServer: dynamic_ssl_server_credentials whose fetcher stats the
             certificate, key and CA files before every handshake
  reload+crl the same, plus the per-call revocation check against a CRL listing 100 serials

For each, N calls on fresh connections (a full mTLS handshake each: where the fetcher runs) and
N calls on one persistent connection (where only the per-call check runs). It prints medians and
each as a ratio to the baseline of the same kind. No thresholds: it reports, people judge.

    python bench/handshake.py [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from grpcpki.engine import CA, Role
from grpcpki.greeter import ClientConfig, GreeterClient, GreeterServer, ServerConfig, TlsFiles
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc


class PlainGreeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext) -> helloworld_pb2.HelloReply:  # noqa: N802
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}")


def write_material(directory: Path) -> dict[str, Path]:
    ca = CA.create("Bench CA")
    server = ca.issue(Role.SERVER, "localhost")
    client = ca.issue(Role.CLIENT, "bench", sans=["spiffe://example.org/bench"])
    files = {
        "ca": ca.root_pem, "server.pem": server.chain_pem, "server.key": server.key_pem,
        "client.pem": client.chain_pem, "client.key": client.key_pem,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = directory / name
        paths[name].write_bytes(data)
    # A CRL with 100 entries (none of them the bench client), made the way `grpcpki revoke` does.
    from grpcpki.engine.pki import Pki
    from grpcpki.engine.revocation import revoke

    pki = Pki.init(directory / "pki")
    for i in range(100):
        revoke(pki, pki.issue(Role.CLIENT, f"gone{i}", sans=[f"spiffe://example.org/gone{i}"]).name)
    paths["crl"] = directory / "pki" / "crl.pem"
    return paths


def plain_server(paths: dict[str, Path]) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(PlainGreeter(), server)
    creds = grpc.ssl_server_credentials(
        [(paths["server.key"].read_bytes(), paths["server.pem"].read_bytes())],
        root_certificates=paths["ca"].read_bytes(), require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


def timed_calls(port: int, paths: dict[str, Path], calls: int, *, fresh: bool) -> list[float]:
    config = ClientConfig(
        target=f"localhost:{port}", files=TlsFiles(paths["client.pem"], paths["client.key"], paths["ca"]),
        new_connection=fresh,
    )
    samples = []
    with GreeterClient(config) as client:
        for seq in range(1, calls + 1):
            start = time.perf_counter()
            result = client.say_hello("bench", seq=seq)
            samples.append(time.perf_counter() - start)
            if not result.ok:
                raise SystemExit(f"call failed: {result.code} {result.details}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_material(Path(tmp))
        files = TlsFiles(paths["server.pem"], paths["server.key"], paths["ca"])
        setups: dict[str, Callable[[], tuple[object, int]]] = {
            "baseline": lambda: plain_server(paths),
            "reload": lambda: _greeter(ServerConfig(listen="127.0.0.1:0", files=files)),
            "reload+crl": lambda: _greeter(ServerConfig(listen="127.0.0.1:0", files=files, crl=paths["crl"])),
        }
        results: dict[tuple[str, str], float] = {}
        for name, setup in setups.items():
            server, port = setup()
            try:
                for kind, fresh in (("new connection", True), ("persistent", False)):
                    timed_calls(port, paths, 10, fresh=fresh)  # warm up
                    results[(name, kind)] = statistics.median(timed_calls(port, paths, args.calls, fresh=fresh))
            finally:
                server.stop(0)  # type: ignore[attr-defined]
    for kind in ("new connection", "persistent"):
        base = results[("baseline", kind)]
        for name in setups:
            value = results[(name, kind)]
            print(f"{kind:15s} {name:11s} {value * 1000:7.3f} ms/call   x{value / base:5.2f} of baseline")


def _greeter(config: ServerConfig) -> tuple[GreeterServer, int]:
    server = GreeterServer(config)
    return server, server.start().port


if __name__ == "__main__":
    main()
