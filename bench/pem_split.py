"""How PEM splitting scales on hostile input, as ratios within one run.

Issue 9: a file of unterminated ``-----BEGIN CERTIFICATE-----`` lines took 4x longer per
doubling (a backreferencing regex rescanned the rest of the file from every BEGIN). This times
``engine.pem.split_pem`` and, for comparison, that old regex, on n and 2n such lines, plus a
well-formed bundle of the same size, and prints the ratio t(2n)/t(n): about 2 is linear, about 4
quadratic. No thresholds: it reports, people judge.

    python bench/pem_split.py [--lines 4000]
"""

from __future__ import annotations

import argparse
import re
import time

from grpcpki.engine.pem import split_pem

_OLD_REGEX = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
_HOSTILE_LINE = b"-----BEGIN CERTIFICATE-----\n"
_GOOD_BLOCK = b"-----BEGIN CERTIFICATE-----\n" + b"QUJD" * 16 + b"\n-----END CERTIFICATE-----\n"


def seconds(function: object, data: bytes) -> float:
    start = time.perf_counter()
    function(data)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=4000, help="n: hostile lines in the smaller input")
    args = parser.parse_args()
    n = args.lines
    cases = {
        "split_pem, hostile": (split_pem, _HOSTILE_LINE),
        "split_pem, good bundle": (split_pem, _GOOD_BLOCK),
        "old regex, hostile": (lambda d: list(_OLD_REGEX.finditer(d)), _HOSTILE_LINE),
    }
    print(f"{'case':<24} {'t(n)':>10} {'t(2n)':>10} {'ratio':>7}")
    for name, (function, unit) in cases.items():
        small, large = seconds(function, unit * n), seconds(function, unit * (2 * n))
        print(f"{name:<24} {small:>9.4f}s {large:>9.4f}s {large / small:>7.2f}")


if __name__ == "__main__":
    main()
