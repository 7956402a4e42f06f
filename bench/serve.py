"""`grpcpki serve` against a bare grpcio Greeter with the same certificates, as ratios in one run.

Issue 10's target: serve >= 0.9x bare grpcio, both on one persistent mTLS channel (RPC/s) and
on new mTLS connections per second, with authorization (--allow) and the revocation check (the
PKI's crl.pem, listing 100 serials) ON. Both servers run as their own processes, one at a time,
with the same thread pool (8 workers); the load comes from this process with a grpcio client.

  bare     grpc.ssl_server_credentials (static), a servicer that only replies
  serve    `grpcpki serve --name localhost --allow SPIFFE_ID` (default call logging: the first
           call of each identity, then counts printed on exit)
  serve --log-calls   the same with a log line per call, for comparison

Measured per server:
  persistent   sequential SayHello calls on one channel (RPC/s), and with 8 calls in flight
  new conn     a new channel (full mTLS handshake) per call (connections/s)

Rounds alternate between the servers (bare, serve, serve --log-calls, then again), and the
median of the rounds is reported, so machine noise falls on all alike. No thresholds: it
reports, people judge.

    GRPC_VERBOSITY=ERROR python bench/serve.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from grpcpki.engine import Pki, Role
from grpcpki.engine.revocation import revoke
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc

SPIFFE_ID = "spiffe://example.org/bench"

BARE_SERVER = '''
import sys
from concurrent import futures
import grpc
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc

class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message="Hello " + request.name)

chain, key, ca = (open(p, "rb").read() for p in sys.argv[1:4])
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
    [(key, chain)], root_certificates=ca, require_client_auth=True))
server.start()
print(port, flush=True)
server.wait_for_termination()
'''


def make_pki(directory: Path) -> Pki:
    pki = Pki.init(directory / "pki", name="Bench CA")
    pki.issue(Role.SERVER, "localhost")
    pki.issue(Role.CLIENT, "bench", sans=[SPIFFE_ID])
    for i in range(100):
        revoke(pki, pki.issue(Role.CLIENT, f"gone{i}", sans=[f"spiffe://example.org/gone{i}"]).name)
    return pki


def start(argv: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"server did not start: {log.read_text()}")
    port = json.loads(line)["port"] if line.startswith("{") else int(line)
    return proc, port


def credentials(pki: Pki) -> grpc.ChannelCredentials:
    material = pki.material("bench")
    return grpc.ssl_channel_credentials(
        root_certificates=material.trust_path.read_bytes(),
        private_key=material.key_path.read_bytes(),
        certificate_chain=material.chain_path.read_bytes(),
    )


def server_cpu(pid: int) -> float:
    """User + system CPU seconds the server process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def persistent_rps(port: int, creds: grpc.ChannelCredentials, seconds: float, in_flight: int,
                   pid: int | None = None, cpu: list[float] | None = None) -> float:
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        request = helloworld_pb2.HelloRequest(name="bench")
        for _ in range(50):
            stub.SayHello(request, timeout=5)
        calls = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        cpu_start = server_cpu(pid) if pid is not None else 0.0
        if in_flight == 1:
            while time.perf_counter() < deadline:
                stub.SayHello(request, timeout=5)
                calls += 1
        else:
            pending = [stub.SayHello.future(request, timeout=5) for _ in range(in_flight)]
            while time.perf_counter() < deadline:
                done = pending.pop(0)
                done.result()
                calls += 1
                pending.append(stub.SayHello.future(request, timeout=5))
            for future in pending:
                future.result()
                calls += 1
        if pid is not None and cpu is not None:
            cpu.append((server_cpu(pid) - cpu_start) / calls)
        return calls / (time.perf_counter() - start)


def new_connections_per_second(port: int, creds: grpc.ChannelCredentials, seconds: float) -> float:
    request = helloworld_pb2.HelloRequest(name="bench")
    # A fresh subchannel per call: no connection reuse between channels (grpc shares subchannels
    # of identical channels in a process unless told otherwise).
    options = [("grpc.use_local_subchannel_pool", 1)]
    calls = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        with grpc.secure_channel(f"localhost:{port}", creds, options=options) as channel:
            helloworld_pb2_grpc.GreeterStub(channel).SayHello(request, timeout=5)
        calls += 1
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        pki = make_pki(directory)
        server_material = pki.material("localhost")
        creds = credentials(pki)
        (directory / "bare.py").write_text(BARE_SERVER)
        serve = [sys.executable, "-m", "grpcpki", "--pki", str(pki.path), "serve", "--name", "localhost",
                 "--listen", "127.0.0.1:0", "--json", "--allow", SPIFFE_ID]
        servers = {
            "bare grpcio": [sys.executable, str(directory / "bare.py"), str(server_material.chain_path),
                            str(server_material.key_path), str(server_material.trust_path)],
            "grpcpki serve": serve,
            "serve --log-calls": [*serve, "--log-calls"],
        }
        measures = ("persistent, 1 in flight (RPC/s)", "persistent, 8 in flight (RPC/s)", "new mTLS connections/s")
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, argv in servers.items():
                proc, port = start(argv, directory / "server.log", env)
                cpu: list[float] = []
                try:
                    values = (
                        persistent_rps(port, creds, args.seconds, 1, proc.pid, cpu),
                        persistent_rps(port, creds, args.seconds, 8),
                        new_connections_per_second(port, creds, args.seconds),
                    )
                finally:
                    proc.terminate()
                    proc.wait(timeout=15)
                for measure, value in zip(measures, values, strict=True):
                    samples.setdefault((name, measure), []).append(value)
                samples.setdefault((name, "cpu"), []).append(cpu[0] * 1e6)
            if "served" not in (directory / "server.log").read_text():
                print("note: serve printed no call counts on exit", file=sys.stderr)
    print(f"grpcio {grpc.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds of {args.seconds:g}s, median shown")
    for measure in measures:
        base = statistics.median(samples[("bare grpcio", measure)])
        print(f"\n{measure}")
        for name in servers:
            value = statistics.median(samples[(name, measure)])
            print(f"  {name:20s} {value:9.0f}   x{value / base:5.2f} of bare grpcio")
    base = statistics.median(samples[("bare grpcio", "cpu")])
    print("\nserver CPU per call, persistent channel, 1 in flight (less noisy than RPC/s on a shared machine)")
    for name in servers:
        value = statistics.median(samples[(name, "cpu")])
        print(f"  {name:20s} {value:7.0f} us   x{base / value:5.2f} of bare grpcio's calls per CPU second")


if __name__ == "__main__":
    main()
