"""click parameter types shared by several commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from grpcpki.engine.durations import parse_duration
from grpcpki.engine.errors import GrpcpkiError


class DurationType(click.ParamType):
    """``30d``, ``12h``, ``2w``: converted to a timedelta; a bad value is a usage error (exit 2)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except GrpcpkiError as exc:
            self.fail(f"{exc.message} ({exc.hint})", param, ctx)


DURATION = DurationType()
