"""Durations as people write them on a command line: ``30d``, ``12h``, ``2w``, ``90m``."""

from __future__ import annotations

import re
from datetime import timedelta

from grpcpki.engine.errors import GrpcpkiError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """``30d`` -> 30 days; a bare number means days (the unit certificates are counted in)."""
    match = _PATTERN.match(text)
    if not match:
        raise GrpcpkiError(f"invalid duration {text!r}", "write a number and a unit: 30d, 12h, 2w, 90m or 45s")
    count, unit = int(match.group(1)), (match.group(2) or "d").lower()
    return timedelta(seconds=count * _UNITS[unit])
