"""One place for output: data to stdout, status and errors to stderr (pipes stay clean)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from rich.console import Console
from rich.markup import escape


@lru_cache(maxsize=1)
def out() -> Console:
    """Console for data: tables, JSON, results a script may read."""
    return Console(soft_wrap=True)


@lru_cache(maxsize=1)
def err() -> Console:
    """Console for people: progress, status lines, warnings and errors."""
    return Console(stderr=True, soft_wrap=True)


def render_error(message: str, hint: str | None = None) -> None:
    """Print one red line: what went wrong, then what to do about it."""
    text = f"[bold red]error:[/] {escape(message)}"
    if hint:
        text += f" [dim]-[/] {escape(hint)}"
    err().print(text, highlight=False)


def warning(message: str) -> None:
    err().print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def success(message: str) -> None:
    err().print(f"[green]✓[/] {escape(message)}", highlight=False)


def info(message: str) -> None:
    err().print(escape(message), highlight=False)


def print_json(data: Any) -> None:
    """Write JSON for scripts to stdout, with no rich markup or wrapping."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def relative(moment: datetime, now: datetime | None = None) -> str:
    """'in 89 days', '3 hours ago': how people read an expiry."""
    now = now or datetime.now(UTC)
    delta = moment - now
    seconds = abs(delta.total_seconds())
    unit, size = next(
        ((unit, size) for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)) if seconds >= size),
        ("second", 1),
    )
    count = int(seconds // size)
    words = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"in {words}" if delta.total_seconds() >= 0 else f"{words} ago"


def expiry_style(not_after: datetime, not_before: datetime, now: datetime | None = None) -> str:
    """Colour for an expiry: red when expired or in its last tenth, yellow past two thirds."""
    now = now or datetime.now(UTC)
    if not_after <= now:
        return "bold red"
    lifetime = (not_after - not_before).total_seconds() or 1
    left = (not_after - now).total_seconds()
    if left < lifetime / 10 or left < 7 * 86400:
        return "red"
    if left < lifetime / 3:
        return "yellow"
    return "green"
