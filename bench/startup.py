"""Start-up cost of commands that do not need grpc, as a ratio against baselines run here.

grpc is imported lazily so that `grpcpki list`/`issue`/`inspect` start fast. This reports, for
the same interpreter and machine, the median wall time of:

  baseline   python -c pass
  grpcpki    python -m grpcpki --version  (CLI group, no command module)
  list       python -m grpcpki list       (engine + inventory, no grpc)
  grpc       python -c "import grpc"      (what every command would pay if imported eagerly)

and prints each as a ratio to the baseline. No thresholds: it reports, people judge.

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def median_seconds(argv: list[str], runs: int, cwd: Path) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        subprocess.run([sys.executable, "-m", "grpcpki", "init-ca"], cwd=cwd, check=True, capture_output=True)
        cases = {
            "baseline": [sys.executable, "-c", "pass"],
            "grpcpki --version": [sys.executable, "-m", "grpcpki", "--version"],
            "grpcpki list": [sys.executable, "-m", "grpcpki", "list"],
            "import grpc": [sys.executable, "-c", "import grpc"],
        }
        results = {name: median_seconds(argv, args.runs, cwd) for name, argv in cases.items()}
    base = results["baseline"]
    for name, seconds in results.items():
        print(f"{name:20s} {seconds * 1000:8.1f} ms   x{seconds / base:5.2f} of baseline")
    print(f"grpcpki list avoids {results['import grpc'] - base:.3f}s of grpc import per call")


if __name__ == "__main__":
    main()
