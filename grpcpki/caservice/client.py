"""Calls to the CA service, as ``grpcpki enroll`` and ``grpcpki renew --daemon`` make them.

Every failure becomes a :class:`CaServiceError` with one line saying what happened and what to
do: the server's own refusal (its status message already says why), or the transport's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from grpcpki.caservice._proto import ca_pb2, ca_pb2_grpc
from grpcpki.engine.errors import GrpcpkiError

TIMEOUT = 30.0
# How a replica's UNAVAILABLE begins when its database, not the replica, is down (server.py).
DATABASE_UNREACHABLE = "the inventory's database is unreachable"


class CaServiceError(GrpcpkiError):
    """The CA service refused a request or could not be reached."""

    def __init__(self, message: str, hint: str | None = None, *, code: str = "") -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass(frozen=True)
class Response:
    name: str
    kind: str
    serial: str
    chain_pem: bytes
    trust_bundle_pem: bytes
    not_after_unix: int


@dataclass(frozen=True)
class Bundle:
    trust_bundle_pem: bytes
    issuing_ca_pem: bytes


def _channel(target: str, *, ca_pem: bytes | None, key_pem: bytes | None = None,
             chain_pem: bytes | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem,
                                               certificate_chain=chain_pem)
    return grpc.secure_channel(target, credentials)


def _call(target: str, method: str, request: Any, *, ca_pem: bytes | None, key_pem: bytes | None = None,
          chain_pem: bytes | None = None) -> Any:
    with _channel(target, ca_pem=ca_pem, key_pem=key_pem, chain_pem=chain_pem) as channel:
        stub = ca_pb2_grpc.CertificateAuthorityStub(channel)
        try:
            return getattr(stub, method)(request, timeout=TIMEOUT, wait_for_ready=False)
        except grpc.RpcError as exc:
            raise _explain(target, method, exc) from None


def _explain(target: str, method: str, exc: grpc.RpcError) -> CaServiceError:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    name = code.name if code is not None else "UNKNOWN"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
        return CaServiceError(f"the CA service refused {method}: {details}", None, code=name)
    if code is grpc.StatusCode.UNAVAILABLE:
        first = details.splitlines()[0] if details else "no details"
        if first.startswith(DATABASE_UNREACHABLE):
            # The service answered: pointing at its address would send the user the wrong way.
            return CaServiceError(
                f"the CA service at {target} is up but cannot reach its database: "
                f"{first.removeprefix(DATABASE_UNREACHABLE).lstrip(': ')}",
                "nothing was issued and no token was spent: retry once the database is back "
                "(docs/team.md#running-several-replicas-behind-a-load-balancer)", code=name)
        hint = "check the address and that `grpcpki ca-server` runs there"
        if "certificate" in details.lower() or "handshake" in details.lower() or "ssl" in details.lower():
            hint = ("the TLS handshake failed: check --ca-bundle (the CA service's trust bundle)"
                    + (", and that the workload certificate is from this CA and unexpired" if method == "Renew" else ""))
        return CaServiceError(f"cannot reach the CA service at {target}: {first}", hint, code=name)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CaServiceError(f"the CA service at {target} did not answer within {TIMEOUT:g}s",
                              "check the address and the network", code=name)
    return CaServiceError(f"{method} at {target} failed: {name}: {details}", None, code=name)


def enroll(target: str, *, token: str, csr_pem: bytes, kind: str, ca_pem: bytes | None) -> Response:
    reply = _call(target, "Enroll", ca_pb2.EnrollRequest(token=token, csr_pem=csr_pem, kind=kind), ca_pem=ca_pem)
    return _response(reply)


def renew(target: str, *, csr_pem: bytes, key_pem: bytes, chain_pem: bytes, ca_pem: bytes) -> Response:
    reply = _call(target, "Renew", ca_pb2.RenewRequest(csr_pem=csr_pem), ca_pem=ca_pem, key_pem=key_pem,
                  chain_pem=chain_pem)
    return _response(reply)


def trust_bundle(target: str, *, ca_pem: bytes | None, key_pem: bytes | None = None,
                 chain_pem: bytes | None = None) -> Bundle:
    reply = _call(target, "GetTrustBundle", ca_pb2.GetTrustBundleRequest(), ca_pem=ca_pem, key_pem=key_pem,
                  chain_pem=chain_pem)
    return Bundle(bytes(reply.trust_bundle_pem), bytes(reply.issuing_ca_pem))


def crl(target: str, *, ca_pem: bytes | None, key_pem: bytes | None = None, chain_pem: bytes | None = None) -> bytes:
    reply = _call(target, "GetCRL", ca_pb2.GetCRLRequest(), ca_pem=ca_pem, key_pem=key_pem, chain_pem=chain_pem)
    return bytes(reply.crl_pem)


def _response(reply: Any) -> Response:
    return Response(reply.name, reply.kind, reply.serial, bytes(reply.chain_pem), bytes(reply.trust_bundle_pem),
                    int(reply.not_after_unix))


def read_bundle(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaServiceError(f"cannot read --ca-bundle {path}: {exc.strerror}", "check the path") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CaServiceError(f"--ca-bundle {path} holds no PEM certificate",
                             "give the CA service's trust bundle (the PKI's ca.crt)")
    return data


__all__ = ["Bundle", "CaServiceError", "Response", "crl", "enroll", "read_bundle", "renew", "trust_bundle"]
