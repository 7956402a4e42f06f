"""click parameter types shared by several commands."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import click

from grpcpki.engine.address import split_target
from grpcpki.engine.durations import MAX_DURATION, parse_days, parse_duration
from grpcpki.engine.errors import GrpcpkiError


class DurationType(click.ParamType):
    """``90d``, ``12h``, ``30m``, ``500ms``: a timedelta within [minimum, maximum]. A bare number,
    a bad unit or a value out of range is a usage error (exit 2) naming the flag."""

    name = "DURATION"

    def __init__(
        self, minimum: timedelta = timedelta(0), maximum: timedelta = MAX_DURATION, *, as_seconds: bool = False
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        # grpc deadlines and time.sleep take float seconds: those options get a float.
        self.as_seconds = as_seconds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, float) and self.as_seconds:
            return value
        else:
            try:
                result = parse_duration(str(value), minimum=self.minimum, maximum=self.maximum)
            except GrpcpkiError as exc:
                self.fail(f"{exc.message} ({exc.hint})", param, ctx)
        return result.total_seconds() if self.as_seconds else result


DURATION = DurationType()


class DaysType(click.ParamType):
    """``--days``: a whole number of days, ``90`` or ``90d`` (the option's name is the unit)."""

    name = "DAYS"

    def __init__(self, minimum: int = 1, maximum: int = 36500) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_days(str(value), minimum=self.minimum, maximum=self.maximum)
        except GrpcpkiError as exc:
            self.fail(f"{exc.message} ({exc.hint})", param, ctx)


class CheckedPath(click.Path):
    """click.Path that first checks the path is one the OS can take: no NUL byte, no name over
    NAME_MAX, the whole under PATH_MAX. So a 300-character --pki is a usage error naming the
    flag, not an ENAMETOOLONG error from deep inside a command."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        problem = path_problem(text)
        if problem is not None:
            self.fail(problem, param, ctx)
        return super().convert(value, param, ctx)


# POSIX minimums most Linux and macOS filesystems use; os.pathconf gives the real values
# where the path exists, these where it does not (yet).
_NAME_MAX = 255
_PATH_MAX = 4096


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot be a path on this system, or None."""
    shown = text if len(text) <= 60 else text[:40] + "..." + text[-12:]
    if not text:
        return "the path is empty"
    if "\x00" in text:
        return f"{shown!r} contains a NUL byte"
    encoded = os.fsencode(text) if _encodable(text) else None
    if encoded is None:
        return f"{shown!r} cannot be encoded as a file name"
    if len(encoded) >= _PATH_MAX:
        return f"the path is {len(encoded)} bytes long; the limit is {_PATH_MAX - 1}"
    for part in encoded.split(b"/"):
        if len(part) > _NAME_MAX:
            return f"{shown!r} has a name of {len(part)} bytes; a file or folder name is at most {_NAME_MAX}"
    return None


def _encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeError:
        return False
    return True


DAYS = DaysType()


class HostPortType(click.ParamType):
    """``HOST:PORT`` (``[v6]:PORT`` and grpc's ``dns:///`` / ``ipv4:`` prefixes too), checked up front
    so a typo is a usage error naming the flag, not a gRPC resolver message."""

    name = "HOST:PORT"

    def __init__(self, *, allow_port_zero: bool = False) -> None:
        self.allow_port_zero = allow_port_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        host, port = split_target(text)
        lowest = 0 if self.allow_port_zero else 1
        if not host or not port.isdigit() or not lowest <= int(port) <= 65535:
            example = "127.0.0.1:0 or [::1]:50051" if self.allow_port_zero else "localhost:50051 or [::1]:50051"
            self.fail(f"{text!r} is not HOST:PORT (e.g. {example})", param, ctx)
        return text


HOST_PORT = HostPortType()
LISTEN_ADDRESS = HostPortType(allow_port_zero=True)
