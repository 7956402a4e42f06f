"""Shared by the property tests and tests/conftest.py: the count of hypothesis cases run."""

from __future__ import annotations

from support import HYPOTHESIS_CASES


def count(name: str) -> None:
    # Every example hypothesis tries, shrinking included, calls this.
    HYPOTHESIS_CASES[name] += 1
