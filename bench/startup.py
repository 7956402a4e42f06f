"""Start-up cost of grpcpki commands, as ratios against baselines run here, in the same run.

Issue 10's target: `grpcpki --help` at most 1.5x a click-only "hello" app. This reports the
median wall time (each command run --runs times, interleaved so machine noise hits all alike) of:

  python -c pass          the interpreter alone
  click hello --help      a click group with one command: the floor for any click CLI
  grpcpki --help          the lazy group: short help from data, no command module imported
  grpcpki --version
  grpcpki list            inventory only: no cryptography, no rich, no grpc
  grpcpki inspect NAME    a command that does need cryptography
  python -c 'import grpc' what every command would pay if grpc were imported eagerly

and prints each as a ratio to the click hello app and to the bare interpreter. No thresholds:
it reports, people judge.

    python bench/startup.py [--runs 21]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compiled import precompile_grpcpki

HELLO = '''
import click

@click.group()
def cli():
    """Hello: the smallest click application."""

@cli.command()
def hello():
    """Say hello."""
    click.echo("hello")

cli()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    precompile_grpcpki()  # as installed: bench/compiled.py
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "hello.py").write_text(HELLO)
        grpcpki = [sys.executable, "-m", "grpcpki"]
        subprocess.run([*grpcpki, "init-ca"], cwd=cwd, check=True, capture_output=True)
        subprocess.run([*grpcpki, "issue", "server", "localhost"], cwd=cwd, check=True, capture_output=True)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "click hello --help": [sys.executable, "hello.py", "--help"],
            "grpcpki --help": [*grpcpki, "--help"],
            "grpcpki --version": [*grpcpki, "--version"],
            "grpcpki list": [*grpcpki, "list"],
            "grpcpki inspect localhost": [*grpcpki, "inspect", "localhost"],
            "import grpc": [sys.executable, "-c", "import grpc"],
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                start = time.perf_counter()
                subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
                samples[name].append(time.perf_counter() - start)
    results = {name: statistics.median(values) for name, values in samples.items()}
    hello, bare = results["click hello --help"], results["python -c pass"]
    print(f"{'command':28s} {'median':>9s} {'x click hello':>14s} {'x python':>9s}")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds * 1000:7.1f}ms {seconds / hello:14.2f} {seconds / bare:9.2f}")
    print(f"\ngrpcpki --help / click hello --help = {results['grpcpki --help'] / hello:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
