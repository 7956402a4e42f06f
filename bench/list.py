"""`grpcpki list` over N certificates against a bare SQLite query printing the same rows.

Issue 10's target: list, list --expiring 30d and list --json over 100,000 certificates at most
3x a bare SQLite query printing the same rows (interpreter start-up included on both sides),
with memory flat in N.

The inventory is seeded directly through SQLite (issuing 100,000 real certificates would take
minutes and measure issuance, not listing): rows shaped like grpcpki's own (a 40-digit serial,
three SANs, a SHA-256 fingerprint, paths), expiries spread over the next 90 days and the last
10 days, on top of a real CA made by init-ca. Each command runs with stdout to /dev/null (as a
pipe would be read), in a fresh interpreter; the figure is the best of --runs runs, and the
peak memory (max RSS) of that child process.

  bare             python: sqlite3, SELECT the columns list prints ORDER BY not_after, write rows
                   (grpcpki list reads the same file with sqlite3 too: grpcpki/engine/listing.py)
  bare json        the same rows as one JSON array (json.dumps per row)
  list             grpcpki list            (piped: plain rows)
  list --expiring  grpcpki list --expiring 30d   vs the bare query with the same WHERE
  list --json      grpcpki list --json     vs bare json

No thresholds: it reports, people judge.

    python bench/list.py [--sizes 1000,10000,100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compiled import precompile_grpcpki

BARE = '''
import json, sqlite3, sys
from datetime import UTC, datetime, timedelta
db = sqlite3.connect(sys.argv[1])
mode = sys.argv[2]
where, params = "WHERE status = 'active'", []
if mode == "expiring":
    where += " AND not_after < ?"
    params.append((datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"))
rows = db.execute(f"SELECT * FROM certificates {where} ORDER BY not_after, name", params)
write = sys.stdout.write
if mode == "json":
    names = [d[0] for d in rows.description]
    sep = "[\\n  "
    for row in rows:
        write(sep + json.dumps(dict(zip(names, row))))
        sep = ",\\n  "
    write("\\n]\\n")
else:
    for row in rows:
        write(f"{row[3]}\\t{row[2]}\\t{row[11]}\\t{row[8]}\\t{row[9]}\\t{row[1]}\\t{row[5]}\\n")
'''


def seed(pki: Path, count: int) -> None:
    db = sqlite3.connect(pki / "inventory.db")
    now = datetime.now(UTC)
    rng = random.Random(10)
    rows = []
    for i in range(count):
        name = f"svc-{i:06d}"
        not_after = now + timedelta(seconds=rng.randint(-10 * 86400, 90 * 86400))
        not_before = not_after - timedelta(days=90)
        kind = "server" if i % 3 else "client"
        sans = [f"DNS:{name}", f"DNS:{name}.prod.svc.cluster.local", f"URI:spiffe://example.org/ns/prod/sa/{name}"]
        rows.append((
            f"{rng.getrandbits(159):x}", kind, name, f"CN={name}", json.dumps(sans), "CN=bench CA",
            not_before.strftime("%Y-%m-%dT%H:%M:%SZ"), not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ":".join(f"{rng.getrandbits(8):02X}" for _ in range(32)), "ecdsa-p256", "active",
            json.dumps(["serverAuth"] if kind == "server" else ["clientAuth"]), 1,
            f"certs/{name}/cert.pem", f"certs/{name}/chain.pem", f"certs/{name}/key.pem",
            now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ))
    with db:
        db.executemany(
            """INSERT INTO certificates (serial, kind, name, subject, sans, issuer, not_before, not_after,
               fingerprint, key_type, status, eku, ca_generation, cert_path, chain_path, key_path, created_at)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            rows,
        )
    db.close()


def measure(argv: list[str], cwd: Path, runs: int) -> tuple[float, int]:
    """Best wall time of ``runs`` runs, and the peak RSS (KiB) of the child in that run."""
    best: tuple[float, int] | None = None
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            assert proc.stderr is not None
            raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()}")
        if best is None or seconds < best[0]:
            best = (seconds, usage.ru_maxrss)
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", nargs=2, metavar=("PKI", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    precompile_grpcpki()  # as installed: bench/compiled.py
    if args.seed:
        seed(Path(args.seed[0]), int(args.seed[1]))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"best of {args.runs} runs, stdout to /dev/null")
    print(f"{'N':>7} {'command':18s} {'grpcpki':>9} {'bare':>9} {'ratio':>6} {'grpcpki RSS':>12} {'bare RSS':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "bare.py").write_text(BARE)
        for size in sizes:
            work = base / f"n{size}"
            work.mkdir()
            subprocess.run([sys.executable, "-m", "grpcpki", "init-ca"], cwd=work, check=True, capture_output=True)
            # Seeded in a child: the rows built here must not count in this process's memory, which
            # a forked child's peak RSS (wait4) would inherit.
            subprocess.run([sys.executable, __file__, "--seed", str(work / "pki"), str(size)], check=True)
            db = str(work / "pki" / "inventory.db")
            cases = {
                "list": ([sys.executable, "-m", "grpcpki", "list"], "rows"),
                "list --expiring 30d": ([sys.executable, "-m", "grpcpki", "list", "--expiring", "30d"], "expiring"),
                "list --json": ([sys.executable, "-m", "grpcpki", "list", "--json"], "json"),
            }
            for label, (argv, mode) in cases.items():
                ours, ours_rss = measure(argv, work, args.runs)
                bare, bare_rss = measure([sys.executable, str(base / "bare.py"), db, mode], work, args.runs)
                print(f"{size:>7} {label:18s} {ours:8.2f}s {bare:8.2f}s {ours / bare:6.2f} "
                      f"{ours_rss / 1024:10.0f}MB {bare_rss / 1024:7.0f}MB")


if __name__ == "__main__":
    main()
