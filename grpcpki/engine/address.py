"""gRPC target addresses: ``HOST:PORT``, ``[v6]:PORT`` and grpc's ``dns:///`` / ``ipv4:`` forms.

One parser for every command that takes an address (``greet --server``, ``serve --listen``,
``probe HOST:PORT``) and for the diagnosis that reads them back.
"""

from __future__ import annotations

import re

__all__ = ["split_target"]


def split_target(target: str) -> tuple[str, str]:
    """("host", "port") from "host:port", "[v6]:port", "dns:///host:port" or "ipv4:host:port";
    the port is "" when there is none (a bare host or IPv6 address)."""
    rest = re.sub(r"^(?:dns:(?://[^/]*)?/|ipv4:|ipv6:)", "", target)
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        return host, port.lstrip(":")
    host, sep, port = rest.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 address
        return rest, ""
    return host, port
