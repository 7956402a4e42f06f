"""Shared by the property tests and tests/hostile/conftest.py: the count of hypothesis cases run."""

from __future__ import annotations

from collections import Counter

# property -> cases run (every example hypothesis tries, shrinking included, calls ``count``).
CASES: Counter[str] = Counter()


def count(name: str) -> None:
    CASES[name] += 1
