"""`grpcpki renew --all --force` of N leaves against the bare cryptography loop, in one run.

Issue 10's target: renew --all --force of 10,000 leaves >= 0.6x the bare in-process loop (the
loop of bench/apply.py: a P-256 key and a leaf per name, files written with the key 0600).

  bare loop   N new leaves, written to certs/NAME/ (interpreter start-up included)
  renew       `python -m grpcpki renew --all --force` on a PKI holding N leaves (made
              beforehand with `grpcpki apply`, not timed): new keys and certificates, the old
              ones archived, rows superseded, in one store transaction; output as cron sees it
              (stdout/stderr to a pipe)
  renew -j1   the same with `--jobs 1`: everything in one process (the default forks one signing
              worker per CPU for passes of 128 or more; the CPU time of a pooled run includes
              its workers')
  renew dry   `grpcpki renew --all --dry-run` of the same PKI (nothing due): the streamed plan

No thresholds: it reports, people judge.

    python bench/renew.py [--count 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from apply import BARE_LOOP, MANIFEST  # noqa: E402
from compiled import precompile_grpcpki  # noqa: E402


CPU: list[float] = []  # user + system CPU seconds of each run(), in order


def run(argv: list[str], cwd: Path) -> float:
    """Wall seconds of a child process; its CPU seconds go to CPU (steadier on a shared machine,
    but blind to time spent waiting for the disk, which the wall time includes)."""
    # stderr to a file, not a pipe: nobody reads a pipe during wait4, and a full one would block.
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{argv} failed: {log.read().decode()}")
    CPU.append(usage.ru_utime + usage.ru_stime)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare/renew this often, keep the best of each")
    parser.add_argument("--jobs", type=int, default=None, help="pass --jobs N to renew [default: its own]")
    args = parser.parse_args()
    precompile_grpcpki()  # as installed: bench/compiled.py
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, N = {args.count}, best of {args.rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "bare.py").write_text(BARE_LOOP)
        work = base / "pki-work"
        work.mkdir()
        (work / "grpcpki.toml").write_text(MANIFEST.format(count=args.count))
        run([sys.executable, "-m", "grpcpki", "init-ca", "--name", "bench CA"], work)
        run([sys.executable, "-m", "grpcpki", "apply"], work)
        bares, renews, bare_cpu, renew_cpu, singles, single_cpu = [], [], [], [], [], []
        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        for round_ in range(args.rounds):
            # Best of several alternating rounds: the machine is shared, and noise only slows.
            bares.append(run([sys.executable, str(base / "bare.py"), str(base / f"bare{round_}"), str(args.count)], base))
            bare_cpu.append(CPU[-1])
            renews.append(run([sys.executable, "-m", "grpcpki", "renew", "--all", "--force", *jobs], work))
            renew_cpu.append(CPU[-1])
            singles.append(run([sys.executable, "-m", "grpcpki", "renew", "--all", "--force", "--jobs", "1"], work))
            single_cpu.append(CPU[-1])
        bare, renew, single = min(bares), min(renews), min(singles)
        dry = run([sys.executable, "-m", "grpcpki", "renew", "--all", "--dry-run"], work)
    print(f"bare cryptography loop   {args.count / bare:8.1f} certs/s  ({bare:.2f}s)")
    print(f"renew --all --force      {args.count / renew:8.1f} certs/s  ({renew:.2f}s)")
    print(f"renew --all --dry-run    {dry:8.2f}s for {args.count} certificates")
    print(f"renew / bare loop:       x{bare / renew:.2f}  (target >= 0.6)")
    print(f"same in CPU time:        x{min(bare_cpu) / min(renew_cpu):.2f}  "
          f"({min(renew_cpu):.2f}s vs {min(bare_cpu):.2f}s of CPU, workers included)")
    print(f"renew --jobs 1           {args.count / single:8.1f} certs/s  ({single:.2f}s)")
    print(f"--jobs 1 / bare loop:    x{bare / single:.2f} wall, x{min(bare_cpu) / min(single_cpu):.2f} CPU "
          f"({min(single_cpu):.2f}s of CPU)")


if __name__ == "__main__":
    main()
