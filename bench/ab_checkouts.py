"""CPU time of `grpcpki apply` and `renew --all --force` from two checkouts, in alternating rounds.

On a shared machine the bare loop's own speed varies more than a code change moves grpcpki, so
comparing two versions of grpcpki against each other, in the same minutes, is the steadier way
to see what a change did. Each checkout is put first on PYTHONPATH for its runs.

    python bench/ab_checkouts.py BEFORE_CHECKOUT AFTER_CHECKOUT [--count 1000] [--rounds 4]

(e.g. `git worktree add /tmp/before main` for BEFORE). No thresholds: it reports.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from apply import MANIFEST  # noqa: E402
from compiled import precompile_grpcpki  # noqa: E402


def cpu_seconds(argv: list[str], cwd: Path, checkout: str) -> float:
    env = dict(os.environ, PYTHONPATH=checkout)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed in {cwd} (checkout {checkout})")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    precompile_grpcpki(args.before)
    precompile_grpcpki(args.after)
    results: dict[str, dict[str, list[float]]] = {"before": {"apply": [], "renew": []}, "after": {"apply": [], "renew": []}}
    base = Path(tempfile.mkdtemp())
    try:
        for round_ in range(args.rounds):
            for label, checkout in (("before", args.before), ("after", args.after)):
                work = base / f"{label}{round_}"
                work.mkdir()
                (work / "grpcpki.toml").write_text(MANIFEST.format(count=args.count))
                cpu_seconds([sys.executable, "-m", "grpcpki", "init-ca", "--name", "bench CA"], work, checkout)
                results[label]["apply"].append(cpu_seconds([sys.executable, "-m", "grpcpki", "apply"], work, checkout))
                results[label]["renew"].append(
                    cpu_seconds([sys.executable, "-m", "grpcpki", "renew", "--all", "--force"], work, checkout)
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"N = {args.count}, {args.rounds} alternating rounds, CPU seconds (min / median)")
    for what in ("apply", "renew"):
        before, after = sorted(results["before"][what]), sorted(results["after"][what])
        print(f"{what:6s} before {before[0]:.2f} / {before[len(before) // 2]:.2f}   "
              f"after {after[0]:.2f} / {after[len(after) // 2]:.2f}   after/before x{after[0] / before[0]:.2f}")


if __name__ == "__main__":
    main()
