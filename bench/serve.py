"""`grpcpki serve` against a bare grpcio Greeter with the same certificates, as ratios in one run.

Issue 10's target: serve >= 0.9x bare grpcio, both on one persistent mTLS channel (RPC/s) and
on new mTLS connections per second, with authorization (--allow) and the revocation check (the
PKI's crl.pem, listing 100 serials) ON. Both servers run as their own processes, one at a time,
with the same thread pool (8 workers); the load comes from this process with a grpcio client.

  bare     grpc.ssl_server_credentials (static), a servicer that only replies
  serve    `grpcpki serve --name localhost --allow SPIFFE_ID` (default call logging: the first
           call of each identity, then counts printed on exit)
  serve, identity asked   the same server, the client sending grpcpki-want-peer-identity as
           `grpcpki greet` does, so each reply carries the grpcpki-peer-identity trailer
  serve --log-calls   the same with a log line per call, for comparison

The client is a plain grpcio client, as a Go/Java/Node service would be: it does not ask for
the identity trailer, so serve does not send it (greet asks; see the "identity asked" line).
What serve does that the bare server does not is the issue's requirement: the --allow check,
the CRL lookup, counting calls, and the certificate reloader's stat of three files before each
handshake.

Measured per server:
  persistent   sequential SayHello calls on one channel (RPC/s), and with 8 calls in flight
  new conn     a new channel (full mTLS handshake) per call (connections/s)

Rounds alternate between the servers (bare, serve, serve --log-calls, then again), and the
median of the rounds is reported, so machine noise falls on all alike. No thresholds: it
reports, people judge.

    GRPC_VERBOSITY=ERROR python bench/serve.py [--seconds 3] [--rounds 3]

With --instructions N, each server instead runs under valgrind's callgrind and the script
reports the instructions the server process executed per call over N calls on one persistent
channel (after a warm-up, between `callgrind_control --zero` and `--dump`). Instruction counts
do not move with the load of a shared machine, so small per-call costs can be compared; they
leave out time in the kernel and waits (a `stat` is one system call). valgrind must be installed.

    GRPC_VERBOSITY=ERROR python bench/serve.py --instructions 500
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
from grpcpki.greeter.identity import IDENTITY_REQUEST_HEADER

SPIFFE_ID = "spiffe://example.org/bench"
ASK_FOR_IDENTITY = ((IDENTITY_REQUEST_HEADER, "1"),)

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
                   pid: int | None = None, cpu: list[float] | None = None,
                   metadata: tuple[tuple[str, str], ...] = ()) -> float:
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        request = helloworld_pb2.HelloRequest(name="bench")
        for _ in range(50):
            stub.SayHello(request, timeout=5, metadata=metadata)
        calls = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        cpu_start = server_cpu(pid) if pid is not None else 0.0
        if in_flight == 1:
            while time.perf_counter() < deadline:
                stub.SayHello(request, timeout=5, metadata=metadata)
                calls += 1
        else:
            pending = [stub.SayHello.future(request, timeout=5, metadata=metadata) for _ in range(in_flight)]
            while time.perf_counter() < deadline:
                done = pending.pop(0)
                done.result()
                calls += 1
                pending.append(stub.SayHello.future(request, timeout=5, metadata=metadata))
            for future in pending:
                future.result()
                calls += 1
        if pid is not None and cpu is not None:
            cpu.append((server_cpu(pid) - cpu_start) / calls)
        return calls / (time.perf_counter() - start)


def new_connections_per_second(port: int, creds: grpc.ChannelCredentials, seconds: float,
                               metadata: tuple[tuple[str, str], ...] = ()) -> float:
    request = helloworld_pb2.HelloRequest(name="bench")
    # A fresh subchannel per call: no connection reuse between channels (grpc shares subchannels
    # of identical channels in a process unless told otherwise).
    options = [("grpc.use_local_subchannel_pool", 1)]
    calls = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        with grpc.secure_channel(f"localhost:{port}", creds, options=options) as channel:
            helloworld_pb2_grpc.GreeterStub(channel).SayHello(request, timeout=5, metadata=metadata)
        calls += 1
    return calls / (time.perf_counter() - start)


def instructions_per_call(argv: list[str], directory: Path, env: dict[str, str], creds: grpc.ChannelCredentials,
                          calls: int, metadata: tuple[tuple[str, str], ...] = ()) -> float:
    """Instructions the server executed per call under callgrind (all its threads together)."""
    out = directory / "callgrind.out"
    for old in directory.glob("callgrind.out*"):
        old.unlink()
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
    proc, port = start([*valgrind, *argv], directory / "server.log", env)
    request = helloworld_pb2.HelloRequest(name="bench")
    try:
        with grpc.secure_channel(f"localhost:{port}", creds) as channel:
            stub = helloworld_pb2_grpc.GreeterStub(channel)
            for _ in range(100):
                stub.SayHello(request, timeout=60, metadata=metadata)
            subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
            for _ in range(calls):
                stub.SayHello(request, timeout=60, metadata=metadata)
            subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    dumps = [path for path in directory.glob("callgrind.out.*") if "Trigger: dump" in path.read_text()[:2000]]
    if len(dumps) != 1:
        raise SystemExit(f"expected one callgrind dump, found {len(dumps)}")
    for line in dumps[0].read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]) / calls
    raise SystemExit(f"no summary line in {dumps[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", type=int, metavar="CALLS", default=0,
                        help="count instructions per call under callgrind over CALLS calls instead of timing")
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
            "serve, identity asked": serve,
            "serve --log-calls": [*serve, "--log-calls"],
        }
        if args.instructions:
            print(f"grpcio {grpc.__version__}, Python {sys.version.split()[0]}, instructions per call of the server "
                  f"process under callgrind, {args.instructions} calls on one persistent channel")
            base_count = 0.0
            for name, argv in servers.items():
                count = instructions_per_call(argv, directory, env, creds, args.instructions,
                                              ASK_FOR_IDENTITY if "identity asked" in name else ())
                base_count = base_count or count
                print(f"  {name:22s} {count:9.0f}   x{base_count / count:5.2f} of bare grpcio's calls per instruction",
                      flush=True)
            return
        measures = ("persistent, 1 in flight (RPC/s)", "persistent, 8 in flight (RPC/s)", "new mTLS connections/s")
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, argv in servers.items():
                proc, port = start(argv, directory / "server.log", env)
                cpu: list[float] = []
                metadata = ASK_FOR_IDENTITY if "identity asked" in name else ()
                try:
                    values = (
                        persistent_rps(port, creds, args.seconds, 1, proc.pid, cpu, metadata),
                        persistent_rps(port, creds, args.seconds, 8, metadata=metadata),
                        new_connections_per_second(port, creds, args.seconds, metadata),
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
