"""A first reading of a failed gRPC call from its status alone: code name + ``details()`` text.

:func:`explain` is pure (no grpc import), so it is table-tested; it looks the text up in
:mod:`.catalogue` and fills in the context (target, name checked, trust bundle). Two facts of
grpcio (BoringSSL) shape it (docs/failures.md, "How grpcio reports a failure"):

* the client only sees ``last error: <tail>`` in ``details()``; ``debug_error_string()`` adds
  nothing (it is ``"<CODE>:" + details()``);
* when the *server* rejects the handshake (no client certificate, wrong CA, expired, no
  clientAuth, plaintext client) the client sees only ``Socket closed``: the cause is in the
  server's log, or found by a live look (:mod:`.failure`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from grpcpki.diagnosis.catalogue import by_kind, match, verify_reason
from grpcpki.engine.address import split_target
from grpcpki.engine.names import is_ip

__all__ = ["Diagnosis", "Dialing", "FailedCall", "explain", "spiffe_as_dns_note", "tail"]


@dataclass(frozen=True)
class Diagnosis:
    """The reading of a failed call.

    ``kind`` is a stable identifier for scripts and tests (a :mod:`.catalogue` row, documented in
    docs/failures.md); ``cause`` and ``fix`` are for people. ``certain`` is False when several
    causes give the same client-side text (then ``cause`` lists them and ``fix`` says where the
    deciding evidence is). ``findings`` are the ids of the probe/doctor findings a live diagnosis
    (:mod:`.failure`) based it on, and ``evidence`` their sentences; both are empty for this
    first, text-only reading.
    """

    code: str
    kind: str
    cause: str
    fix: str
    certain: bool = True
    findings: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()


class _Files(Protocol):
    @property
    def chain(self) -> Path | None: ...
    @property
    def key(self) -> Path | None: ...
    @property
    def ca(self) -> Path | None: ...


class Dialing(Protocol):
    """How the failed call dialed (the Greeter's ``Dialing`` is one)."""

    @property
    def target(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def server_name(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def files(self) -> _Files: ...


class FailedCall(Protocol):
    """What came back (the Greeter's ``CallResult`` is one)."""

    @property
    def ok(self) -> bool: ...
    @property
    def code(self) -> str: ...
    @property
    def details(self) -> str | None: ...
    @property
    def identity(self) -> str | None: ...
    @property
    def client_serial(self) -> str | None: ...
    @property
    def diagnosis(self) -> Diagnosis | None: ...


_PREFIX = "failed to connect to all addresses; last error: "
_VERIFY_RE = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")
# `grpcpki serve`'s refusal of a revoked client (grpcpki.greeter.crl.Revoked.message).
_REVOKED_RE = re.compile(r"serial ([0-9a-fA-F:]+)\b.*?\bis revoked", re.DOTALL)
_UPDATED_RE = re.compile(r"\((\S+ updated [^)]*)\)")
# Status codes that are a reading on their own: the handshake worked and the server answered.
_BY_CODE = {"PERMISSION_DENIED": "permission-denied", "UNIMPLEMENTED": "unimplemented", "DEADLINE_EXCEEDED": "deadline-exceeded"}


def tail(details: str) -> str:
    """The distinctive end of a grpc ``details()`` string, without the fixed preamble."""
    text = details.strip()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    # Drop the "UNKNOWN: ipv4:127.0.0.1:PORT: " / "UNAVAILABLE: ipv6:[::1]:PORT: " address prefix.
    text = re.sub(r"^[A-Z_]+: (?:ipv4|ipv6|unix|dns):\S+: ", "", text)
    # BoringSSL appends ": OK" (the X509 verify result of the *last* check): noise.
    return re.sub(r": OK$", "", text)


class _Context(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def explain(
    code: str,
    details: str,
    *,
    target: str,
    mode: str = "mtls",
    server_name: str | None = None,
    trust: str | None = None,
    server_sans: Sequence[str] | None = None,
    timeout: float | None = None,
) -> Diagnosis:
    """Read a failed call: ``code`` is the status name (``"UNAVAILABLE"``), ``details`` its details().

    ``target`` is what was dialed, ``mode`` how (``mtls``, ``tls`` or ``plaintext``), ``server_name`` the ``grpc.ssl_target_name_override`` if any,
    ``trust`` a short description of the client's trust bundle (file name), ``server_sans`` the
    SANs of the server certificate when the caller knows them (grpc never reports them).
    """
    code = code.upper().removeprefix("STATUSCODE.")
    text = tail(details)
    low = text.lower()
    host, port = split_target(target)
    checked = server_name or host
    context = _Context(
        target=target,
        host=host,
        where=f"{host}:{port}",
        checked=checked,
        trust=trust or "grpc's built-in roots",
        details=details.strip(),
        text=text or code,
        deadline=f"{timeout:g} s" if timeout else "the deadline",
        flag="ip" if is_ip(checked) else "dns",
    )
    reason = None
    if code in _BY_CODE:
        kind = _BY_CODE[code]
    elif code == "UNAUTHENTICATED" and " is revoked" in low:
        # The handshake worked; `grpcpki serve` found the client's serial in its CRL (per call, as
        # grpcio cannot check a CRL in the handshake). Servers that check the CRL in the handshake
        # (Go, Envoy) read as 'Socket closed' or 'tls: revoked certificate'.
        kind = "client-cert-revoked"
        serial, updated = _REVOKED_RE.search(text), _UPDATED_RE.search(text)
        context["serial"] = f" (serial {serial.group(1)})" if serial else ""
        context["crl"] = f"the server's CRL ({updated.group(1)})" if updated else "the server's CRL"
    elif (verify := _VERIFY_RE.search(text)) is not None:
        reason = verify.group(1).strip()
        row = verify_reason(reason)
        kind = row.kind if row is not None else "server-cert-rejected"
    else:
        row = match(text, ["status"], mode=mode, stack="grpcio")
        kind = row.kind if row is not None else "other"
        if code == "UNAUTHENTICATED" and kind != "hostname-mismatch":
            kind = "unauthenticated"
    if reason is not None:
        context["reason"] = reason
    if kind == "hostname-mismatch":
        _hostname_context(context, checked, host, server_name, server_sans)
    failure = by_kind(kind)
    return Diagnosis(
        code=code,
        kind=kind,
        cause=failure.cause.format_map(context),
        fix=failure.fix.format_map(context),
        certain=failure.certain,
    )


def _hostname_context(
    context: _Context, checked: str, host: str, server_name: str | None, server_sans: Sequence[str] | None
) -> None:
    # grpc names neither the checked name nor the certificate's SANs (docs/failures.md#hostname-mismatch).
    context["how"] = (
        "an IP address SAN is needed: a DNS SAN or the CN never matches an IP target"
        if is_ip(checked)
        else "a DNS SAN is needed (the CN is only used when the certificate has no SAN at all)"
    )
    context["override"] = f" (from --server-name; dialed {host})" if server_name else ""
    context["covers"] = (
        f"; the certificate covers: {', '.join(server_sans) or 'no SANs'}" if server_sans is not None else ""
    )


def spiffe_as_dns_note(dns_names: Sequence[str]) -> str:
    """Why an allow list cannot match a caller that carries its SPIFFE ID as a DNS SAN (cfssl does
    this with a ``spiffe://`` entry in ``hosts``); "" when it does not. X509-SVID section 2: the
    SPIFFE ID is a URI SAN, and grpcio reports a DNS-written one as peer_dns, not peer_spiffe_id."""
    value = next((d for d in dns_names if d.lower().startswith("spiffe://")), None)
    if value is None:
        return ""
    return (
        f"; it presents {value} as a DNS SAN, not as a URI SAN, so it is no SPIFFE ID and --allow {value} "
        f"cannot match it: reissue its certificate with the ID as a URI SAN (--spiffe-id {value})"
    )
