"""One place for output: data to stdout, status and errors to stderr (pipes stay clean).

Text from outside (certificate fields, fingerprints, file names, grpc's messages) is never read
as rich markup or emoji: the consoles are made with ``emoji=False`` (a fingerprint's ``:AB:``
stays ``:AB:``) and the helpers below print outside text as :class:`rich.text.Text`. A suggested
command is printed on a line of its own, outside any panel, never wrapped (:func:`fix_lines`), so
it can be copied and pasted as it is.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text


@lru_cache(maxsize=1)
def out() -> Console:
    """Console for data: tables, JSON, results a script may read."""
    return Console(soft_wrap=True, emoji=False, highlight=False)


@lru_cache(maxsize=1)
def err() -> Console:
    """Console for people: progress, status lines, warnings and errors."""
    return Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)


def render_error(message: str, hint: str | None = None) -> None:
    """Print one red line: what went wrong, then what to do about it."""
    text = f"[bold red]error:[/] {escape(message)}"
    if hint:
        text += f" [dim]-[/] {escape(hint)}"
    err().print(text, highlight=False)


# A fix that is a command as a whole, and commands quoted in a fix's prose (`grpcpki renew web`).
_COMMAND_WORDS = ("grpcpki ", "openssl ", "chmod ", "ssh-keygen ", "ls ", "timedatectl ")
_QUOTED = re.compile(r"`([^`]+)`")


def commands_in(fix: str) -> list[str]:
    """The runnable commands a fix names: the whole fix if it is one, else each `quoted` one."""
    if fix.startswith(_COMMAND_WORDS) and "`" not in fix:
        return [fix]
    return [c for c in _QUOTED.findall(fix) if c.startswith(_COMMAND_WORDS)]


def fix_lines(fix: str, *, console: Console | None = None) -> None:
    """Each command of ``fix`` on a line of its own, indented, never wrapped and never read as
    markup: what a user copies is exactly what grpcpki means."""
    target = console or err()
    for command in commands_in(fix):
        target.print(Text("    " + command), soft_wrap=True, crop=False, overflow="ignore", no_wrap=True)


def plain(text: str, style: str = "") -> Text:
    """Outside text (a subject, a fingerprint, a path) as rich Text: never markup, never emoji."""
    return Text(text, style=style)


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
