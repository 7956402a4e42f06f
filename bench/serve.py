"""`grpcpki serve` against a bare grpcio Greeter with the same certificates, as ratios in one run.

Issue 10's target: serve >= 0.9x bare grpcio, both on one persistent mTLS channel (RPC/s) and
on new mTLS connections per second, with authorization (--allow) and the revocation check (the
PKI's crl.pem, listing 100 serials) ON. Both servers run as their own processes, one at a time,
with the same thread pool (8 workers); the load comes from this process with a grpcio client.

  bare     grpc.ssl_server_credentials (static), a servicer that only replies
  bare, 2 workers started   the same, its thread pool's first two threads started before it
           serves, as serve starts its own: a reference, not the target's baseline (see below)
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

Each round starts every server, then takes the sequential calls in turns of 0.1 s per server
until each has had --seconds (so a change in the machine's load falls on all alike, and each
turn is long enough for the server's caches to be warm), then measures the other two server by
server; the median of the rounds is reported, and each round's figure is shown beside it. No
thresholds: it reports, people judge.

Each round starts every server anew, and a server process's speed on one persistent channel
can depend on how many of its handler threads the calls rotate through (grpcio's
ThreadPoolExecutor starts threads lazily). Under load, lazily started processes looked slow about
half the time; on a quiet machine, a bare Greeter with two threads started up front was the
slower one in every run (docs/performance.md, serve, third and fourth passes). serve starts its
threads lazily, as the plain bare Greeter does; the "2 workers started" line is kept as a
reference for that effect.

    GRPC_VERBOSITY=ERROR python bench/serve.py [--seconds 3] [--rounds 3]

With --instructions N, each server instead runs under valgrind's callgrind and the script
reports the instructions the server process executed per call over N calls on one persistent
channel (after a warm-up, between `callgrind_control --zero` and `--dump`). Instruction counts
do not move with the load of a shared machine, so small per-call costs can be compared; they
leave out time in the kernel and waits (a `stat` is one system call), and valgrind runs one
thread at a time, so they cannot show how the server's threads hand calls to each other (the
thread-pool race above). valgrind must be installed.

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
import threading
from concurrent import futures
import grpc
from grpcpki.greeter._proto import helloworld_pb2, helloworld_pb2_grpc

class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message="Hello " + request.name)

chain, key, ca = (open(p, "rb").read() for p in sys.argv[1:4])
pool = futures.ThreadPoolExecutor(max_workers=8)
if sys.argv[4:] == ["--start-two-workers"]:  # the reference line (docs/performance.md, serve, fourth pass)
    barrier = threading.Barrier(2)
    for task in [pool.submit(barrier.wait) for _ in range(2)]:
        task.result()
server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])
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
                   metadata: tuple[tuple[str, str], ...] = ()) -> float:
    """RPC/s on one channel with ``in_flight`` calls outstanding at all times."""
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        request = helloworld_pb2.HelloRequest(name="bench")
        for _ in range(50):
            stub.SayHello(request, timeout=5, metadata=metadata)
        calls = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        pending = [stub.SayHello.future(request, timeout=5, metadata=metadata) for _ in range(in_flight)]
        while time.perf_counter() < deadline:
            done = pending.pop(0)
            done.result()
            calls += 1
            pending.append(stub.SayHello.future(request, timeout=5, metadata=metadata))
        for future in pending:
            future.result()
            calls += 1
        return calls / (time.perf_counter() - start)


def interleaved_rps(targets: dict[str, tuple[int, int, tuple[tuple[str, str], ...]]], creds: grpc.ChannelCredentials,
                    seconds: float, block: float = 0.1) -> dict[str, tuple[float, float]]:
    """Sequential calls on one persistent channel per server, all servers up at once, taken in
    turns of ``block`` seconds until each has had ``seconds``: a change in the machine's load
    falls on every server alike, and each turn is long enough (a few hundred calls) for the
    server's caches to be warm. ``targets``: name -> (port, pid, metadata). Returns name ->
    (RPC/s, server CPU seconds per call)."""
    request = helloworld_pb2.HelloRequest(name="bench")
    channels = {name: grpc.secure_channel(f"localhost:{port}", creds) for name, (port, _, _) in targets.items()}
    try:
        stubs = {name: helloworld_pb2_grpc.GreeterStub(channel).SayHello for name, channel in channels.items()}
        for name, stub in stubs.items():
            for _ in range(50):
                stub(request, timeout=5, metadata=targets[name][2])
        calls = dict.fromkeys(targets, 0)
        spent = dict.fromkeys(targets, 0.0)
        cpu_start = {name: server_cpu(pid) for name, (_, pid, _) in targets.items()}
        while min(spent.values()) < seconds:
            for name, stub in stubs.items():
                metadata = targets[name][2]
                start = time.perf_counter()
                end = start + block
                while True:
                    stub(request, timeout=5, metadata=metadata)
                    calls[name] += 1
                    now = time.perf_counter()
                    if now >= end:
                        break
                spent[name] += now - start
        return {name: (calls[name] / spent[name], (server_cpu(pid) - cpu_start[name]) / calls[name])
                for name, (_, pid, _) in targets.items()}
    finally:
        for channel in channels.values():
            channel.close()


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
            "bare, 2 workers started": [sys.executable, str(directory / "bare.py"), str(server_material.chain_path),
                                        str(server_material.key_path), str(server_material.trust_path),
                                        "--start-two-workers"],
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
                print(f"  {name:24s} {count:9.0f}   x{base_count / count:5.2f} of bare grpcio's calls per instruction",
                      flush=True)
            return
        measures = ("persistent, 1 in flight (RPC/s)", "persistent, 8 in flight (RPC/s)", "new mTLS connections/s")
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            started: dict[str, tuple[subprocess.Popen[str], int]] = {}
            try:
                for index, (name, argv) in enumerate(servers.items()):
                    started[name] = start(argv, directory / f"server{index}.log", env)
                metadata = {name: ASK_FOR_IDENTITY if "identity asked" in name else () for name in servers}
                one_in_flight = interleaved_rps(
                    {name: (port, proc.pid, metadata[name]) for name, (proc, port) in started.items()},
                    creds, args.seconds,
                )
                for name, (_proc, port) in started.items():
                    rps, cpu = one_in_flight[name]
                    values = (
                        rps,
                        persistent_rps(port, creds, args.seconds, 8, metadata=metadata[name]),
                        new_connections_per_second(port, creds, args.seconds, metadata[name]),
                    )
                    for measure, value in zip(measures, values, strict=True):
                        samples.setdefault((name, measure), []).append(value)
                    samples.setdefault((name, "cpu"), []).append(cpu * 1e6)
            finally:
                for proc, _ in started.values():
                    proc.terminate()
                for proc, _ in started.values():
                    proc.wait(timeout=15)
            if "served" not in (directory / f"server{len(servers) - 1}.log").read_text():
                print("note: serve printed no call counts on exit", file=sys.stderr)
    print(f"grpcio {grpc.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds of {args.seconds:g}s, median shown")
    for measure in measures:
        base = statistics.median(samples[("bare grpcio", measure)])
        print(f"\n{measure}")
        for name in servers:
            value = statistics.median(samples[(name, measure)])
            rounds = ", ".join(f"{v:.0f}" for v in samples[(name, measure)])
            print(f"  {name:24s} {value:9.0f}   x{value / base:5.2f} of bare grpcio   (rounds: {rounds})")
    base = statistics.median(samples[("bare grpcio", "cpu")])
    print("\nserver CPU per call, persistent channel, 1 in flight (less noisy than RPC/s on a shared machine)")
    for name in servers:
        value = statistics.median(samples[(name, "cpu")])
        rounds = ", ".join(f"{v:.0f}" for v in samples[(name, "cpu")])
        print(f"  {name:24s} {value:7.0f} us   x{base / value:5.2f} of bare grpcio's calls per CPU second"
              f"   (rounds: {rounds})")


if __name__ == "__main__":
    main()
