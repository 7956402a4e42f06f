"""The Greeter's own vocabulary: how it dials or listens (:data:`Mode`) and why it cannot start
(:class:`GreeterError`). Explaining a failed call is :mod:`grpcpki.diagnosis`'s job."""

from __future__ import annotations

from typing import Literal

from grpcpki.engine.errors import GrpcpkiError

__all__ = ["MODE_WORDS", "GreeterError", "Mode"]

Mode = Literal["mtls", "tls", "plaintext"]
"""How a client dials or a server listens: mutual TLS, server-only TLS, or no TLS at all."""

MODE_WORDS: dict[str, str] = {
    "mtls": "mTLS (client certificate required)",
    "tls": "TLS (server certificate only)",
    "plaintext": "plaintext (no TLS)",
}


class GreeterError(GrpcpkiError):
    """The Greeter cannot start: bad flags, unusable certificate files, port in use."""
