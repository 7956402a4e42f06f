"""Durations as people write them on a command line: ``90d``, ``12h``, ``30m``, ``2w``, ``45s``, ``500ms``.

One spelling everywhere (docs/commands.md, "Durations"): a number and a unit. A bare number is
refused rather than guessed, because the same ``30`` used to mean days for ``--expiring`` and
seconds for ``--interval``. Options named ``--days`` are the one exception: their name is the unit.
"""

from __future__ import annotations

import re
from datetime import timedelta

from grpcpki.engine.errors import GrpcpkiError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Up to 18 digits before the point: enough for any sane duration, and it keeps int()/float()
# away from the 4300-digit conversion limit and timedelta's overflow.
_PATTERN = re.compile(r"(\d{1,18})(?:\.(\d{1,9}))?(ms|s|m|h|d|w)", re.IGNORECASE | re.ASCII)
_BARE_NUMBER = re.compile(r"\d{1,18}(?:\.\d{1,9})?", re.ASCII)
# A century: longer than any certificate grpcpki issues (CA default 10 years, --days max 36500).
MAX_DURATION = timedelta(days=36500)
_EXAMPLES = "write a number and a unit: 90d, 12h, 30m, 2w, 45s or 500ms"


class DurationError(GrpcpkiError, ValueError):
    """A duration is malformed or out of range."""


def parse_duration(
    text: str, *, minimum: timedelta = timedelta(0), maximum: timedelta = MAX_DURATION
) -> timedelta:
    """``90d`` -> 90 days; DurationError (with the fix) for anything else or out of range."""
    stripped = text.strip()
    match = _PATTERN.fullmatch(stripped)
    if match is None:
        if _BARE_NUMBER.fullmatch(stripped):
            raise DurationError(
                f"{stripped!r} has no unit",
                f"write {stripped}d for days, {stripped}h for hours, {stripped}m for minutes or {stripped}s for seconds",
            )
        shown = stripped if len(stripped) <= 40 else stripped[:40] + "..."
        raise DurationError(f"invalid duration {shown!r}", _EXAMPLES)
    whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3).lower()
    value = (int(whole) + (int(fraction) / 10 ** len(fraction) if fraction else 0)) * _UNITS[unit]
    if value > maximum.total_seconds():
        raise DurationError(f"{stripped} is longer than {format_duration(maximum)}", f"use at most {format_duration(maximum)}")
    # Milliseconds are the finest unit written here; rounding to them keeps format_duration exact.
    result = timedelta(milliseconds=round(value * 1000))
    if result < minimum:
        raise DurationError(f"{stripped} is shorter than {format_duration(minimum)}", f"use at least {format_duration(minimum)}")
    return result


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of ``value`` in the units :func:`parse_duration` reads: ``36500d``, ``90s``."""
    milliseconds = round(value.total_seconds() * 1000)
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit] * 1000)
        if milliseconds % size == 0 and (milliseconds or unit == "s"):
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def parse_days(text: str, *, minimum: int = 1, maximum: int = 36500) -> int:
    """A whole number of days for ``--days``: ``90`` or ``90d`` (the option's name is its unit)."""
    stripped = text.strip()
    digits = stripped[:-1] if stripped[-1:].lower() == "d" else stripped
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise DurationError(
            f"{stripped[:40]!r} is not a whole number of days", "write a whole number of days, such as 90 or 90d"
        )
    days = int(digits)
    if not minimum <= days <= maximum:
        raise DurationError(f"{days} days is outside {minimum}-{maximum}", f"use {minimum} to {maximum} days")
    return days


__all__ = ["MAX_DURATION", "DurationError", "format_duration", "parse_days", "parse_duration"]
