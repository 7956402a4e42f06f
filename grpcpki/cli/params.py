"""click parameter types shared by several commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from grpcpki.engine.address import split_target
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
