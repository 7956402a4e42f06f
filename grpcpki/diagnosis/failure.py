"""Why did a call fail? The gRPC status, a live probe and the doctor, combined into one cause.

:func:`.explain.explain` reads grpc's text alone, and that text often cannot say why: a missing
client certificate, one from another CA, an expired one, one without clientAuth and a plaintext
client all read ``Socket closed`` (docs/failures.md#server-rejected-client), and a hostname
failure never names the names compared (docs/failures.md#hostname-mismatch). Two more sources
decide:

* a live probe (:func:`.probe.probe`) with the same target, server name, trust bundle and client
  material the call used: what the server presents (chain, SANs), whether it speaks TLS, whether
  it requires a client certificate, whether it accepts this one;
* the doctor (:func:`.doctor.check_material`) on the client's own certificate for the client
  role: expired, wrong EKU, not issued by the CA this client trusts (in a one-CA PKI the server
  trusts that same CA for clients).

Which finding proves which cause is the catalogue's knowledge (:mod:`.catalogue`: each row's
``doctor`` and ``narrows``), not this module's. :func:`combine` is pure (first reading + evidence
-> :class:`~.explain.Diagnosis`), so the rules are table-testable; :func:`diagnose_failure`
gathers the evidence (network) and combines. No grpc import here: the probe is stdlib ``ssl``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpcpki.diagnosis import catalogue
from grpcpki.diagnosis.explain import Diagnosis, Dialing, FailedCall, explain, tail
from grpcpki.diagnosis.fixes import issue_command
from grpcpki.engine.address import split_target
from grpcpki.engine.names import is_ip

if TYPE_CHECKING:
    from grpcpki.diagnosis.findings import Finding
    from grpcpki.diagnosis.probe import ProbeResult

__all__ = ["Evidence", "combine", "diagnose_failure", "failure_key", "gather"]


# Readings that need no live look: the handshake worked (the server answered), or the call
# never left this process, or the server is just slow.
_HANDSHAKE_WORKED = frozenset(
    {"permission-denied", "unimplemented", "unauthenticated", "client-cert-revoked", "deadline-exceeded"}
)
_LOCAL_ONLY = frozenset({"local-credentials-unusable"})
# The probe must not take longer than the user's own deadline; a loopback handshake takes ms.
_PROBE_TIMEOUT = 3.0

@dataclass(frozen=True)
class Evidence:
    """What a live look found: the probe (None if not run) and the doctor on the client's files."""

    probe: ProbeResult | None = None
    local: tuple[Finding, ...] = ()

    def all(self) -> list[Finding]:
        found = list(self.probe.findings) if self.probe is not None else []
        seen = {(f.id, f.message) for f in found}
        return found + [f for f in self.local if (f.id, f.message) not in seen]


def failure_key(result: FailedCall) -> tuple[object, ...]:
    """Calls that fail the same way (same status, same grpc text, same client certificate) get
    one diagnosis: a `greet --count 0` loop probes once per distinct failure, not per call."""
    kind = result.diagnosis.kind if result.diagnosis else None
    return (result.code, tail(result.details or ""), result.client_serial, kind)


def gather(
    config: Dialing,
    *,
    probe: bool = True,
    known_cas: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    owners: Mapping[str, str] | None = None,
) -> Evidence:
    """Run the doctor on the client's material and (``probe``) a live probe of the target, with
    the same server name, trust bundle and client certificate the call used."""
    from grpcpki.diagnosis import doctor
    from grpcpki.diagnosis.findings import Severity
    from grpcpki.diagnosis.probe import probe as run_probe
    from grpcpki.engine.errors import GrpcpkiError
    from grpcpki.engine.storage import read_file

    files = config.files
    mutual = config.mode == "mtls" and files.chain is not None and files.key is not None
    local: tuple[Finding, ...] = ()
    if mutual:
        local = tuple(
            f
            for f in doctor.check_material(
                files.chain, files.key, role="client", trust=files.ca, known_cas=known_cas, now=now  # type: ignore[arg-type]
            )
            if f.severity is not Severity.INFO
        )
    result = None
    host, port = split_target(config.target)
    if probe and host and port.isdigit() and 0 < int(port) < 65536:
        ca_pem = None
        if config.mode != "plaintext" and files.ca is not None:
            try:
                ca_pem = read_file(files.ca, "trust bundle")
            except GrpcpkiError:
                ca_pem = None
        result = run_probe(
            host,
            int(port),
            server_name=config.server_name if config.mode != "plaintext" else None,
            ca_pem=ca_pem,
            client_cert_path=files.chain if mutual else None,
            client_key_path=files.key if mutual else None,
            timeout=min(config.timeout, _PROBE_TIMEOUT),
            known_cas=known_cas,
            owners=owners,
        )
    return Evidence(probe=result, local=local)


def diagnose_failure(
    result: FailedCall,
    config: Dialing,
    *,
    known_cas: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    owners: Mapping[str, str] | None = None,
) -> Diagnosis:
    """The most specific cause of a failed call, from its status, a probe and the doctor.

    ``known_cas``: PEM of the PKI's intermediates (to name a missing one); ``owners``: serial ->
    inventory name (:func:`.store.owners`), so a fix reissues the PKI's own certificate in place. Never raises for
    what it finds; a probe that itself fails just leaves the first reading in place.
    """
    first = result.diagnosis or explain(
        result.code,
        result.details or "",
        target=config.target,
        mode=config.mode,
        server_name=config.server_name,
        trust=str(config.files.ca) if config.files.ca else None,
        timeout=config.timeout,
    )
    if result.ok or first.kind in _HANDSHAKE_WORKED or result.code == "NOT_SENT":
        if first.kind == "permission-denied":
            return _permission(first, result, config)
        if first.kind == "client-cert-revoked":
            return _revoked(first, config)
        return first
    evidence = gather(config, probe=first.kind not in _LOCAL_ONLY, known_cas=known_cas, now=now, owners=owners)
    return combine(first, evidence, config)


def _client_name(config: Dialing) -> str | None:
    """The CN of the client certificate the call used (grpcpki names a certificate by its CN)."""
    from grpcpki.engine import cert_info
    from grpcpki.engine.errors import GrpcpkiError

    chain = config.files.chain
    try:
        return cert_info(chain.read_bytes()).common_name if chain is not None else None
    except (OSError, GrpcpkiError):
        return None


def _revoked(first: Diagnosis, config: Dialing) -> Diagnosis:
    """Name the `grpcpki issue client` command that replaces the revoked certificate, from the
    certificate itself (its CN is the PKI name; its SANs the flags to give again)."""
    from grpcpki.engine import cert_info
    from grpcpki.engine.errors import GrpcpkiError
    from grpcpki.engine.storage import read_file

    chain = config.files.chain
    try:
        leaf = cert_info(read_file(chain, "certificate")) if chain is not None else None
    except (OSError, GrpcpkiError):
        leaf = None
    if leaf is None or not leaf.common_name:
        return first
    name = leaf.common_name
    command = issue_command("client", name, [str(san) for san in leaf.sans])
    return dataclasses.replace(
        first,
        fix=f"a revoked certificate stays revoked and cannot be renewed: issue {name} a new one "
        f"(`{command}`) and use it (`grpcpki greet --name {name}`)",
    )


def _permission(first: Diagnosis, result: FailedCall, config: Dialing) -> Diagnosis:
    who = result.identity
    if not who:
        return first
    if "as a DNS SAN, not as a URI SAN" in (result.details or ""):
        # The server said why no allow list can match: a SPIFFE ID written as a DNS SAN.
        name = _client_name(config) or "NAME"
        return dataclasses.replace(
            first,
            cause=f"the server refused this identity: {result.details}",
            fix=f"issue a client certificate with the SPIFFE ID as a URI SAN (X509-SVID section 2) and call with "
            f"it: `grpcpki issue client {name}-svid --spiffe-id {who}`",
        )
    return dataclasses.replace(
        first,
        cause=f"the TLS handshake succeeded, but the server does not allow the identity {who} "
        f"(it has an allow list, and this identity is not on it)",
        fix=f"allow it on the server (serve --allow {who}), or call with a certificate it allows",
    )


# --------------------------------------------------------------------------- combining


def _with(
    first: Diagnosis,
    evidence: Evidence,
    *,
    kind: str | None = None,
    cause: str | None = None,
    fix: str | None = None,
    certain: bool | None = None,
) -> Diagnosis:
    """``first`` with the evidence's finding ids attached, and what the evidence decided."""
    found = evidence.all()
    return dataclasses.replace(
        first,
        kind=kind if kind is not None else first.kind,
        cause=cause if cause is not None else first.cause,
        fix=fix if fix is not None else first.fix,
        certain=certain if certain is not None else first.certain,
        findings=tuple(dict.fromkeys(f.id for f in found)),
        evidence=tuple(f"{f.severity.value} {f.id}: {f.message}" for f in found),
    )


def _errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity.value == "error"]


def _pick(findings: Sequence[Finding], order: Sequence[str]) -> Finding | None:
    for wanted in order:
        for f in findings:
            if f.id == wanted:
                return f
    return None


def _server_chain(evidence: Evidence) -> list[Finding]:
    """Errors about what the server presents (the probe labels them 'server chain at ...'),
    and about the client's trust bundle (an expired CA fails the server's chain too)."""
    if evidence.probe is None:
        return []
    return [
        f
        for f in _errors(evidence.probe.findings)
        if (f.subject or "").startswith("server chain at") or f.id == "trust-ca-expired"
    ]


def _names(probe: ProbeResult) -> tuple[list[str], str]:
    """(dialable names on the server certificate, how to say what it covers)."""
    if not probe.chain:
        return [], "(the certificate could not be read)"
    leaf = probe.chain[0]
    names = [s.value for s in leaf.sans if s.kind in ("dns", "ip")]
    if leaf.has_san_extension:
        text = ", ".join(str(s) for s in leaf.sans) or "no names"
        return names, f"the certificate is for {text}"
    cn = leaf.common_name
    # gRPC C-core falls back to the CN only without any SAN and for DNS targets (docs/failures.md#hostname-mismatch).
    return ([cn] if cn else []), f"the certificate has no subjectAltName, only CN={cn}"


def _hostname(first: Diagnosis, evidence: Evidence, config: Dialing, finding: Finding | None) -> Diagnosis:
    probe = evidence.probe
    assert probe is not None
    host, port = split_target(config.target)
    checked = config.server_name or host
    names, covers = _names(probe)
    if config.server_name:
        dialed = f"this client checked the server certificate for {checked!r} (--server-name; dialed {host})"
    else:
        dialed = f"you dialed {checked}"
    why = ""
    if is_ip(checked):
        # IP targets match IP SANs only, never DNS SANs or the CN (docs/failures.md#hostname-mismatch).
        why = "; gRPC checks an IP address only against IP SANs"
    elif names and all(is_ip(n) for n in names):
        # A DNS target never matches an IP SAN (docs/failures.md#hostname-mismatch).
        why = "; gRPC checks a DNS name only against DNS SANs"
    options: list[str] = []
    if config.server_name and host.lower() in (n.lower() for n in names):
        options.append(f"drop --server-name (the certificate covers {host}, the name dialed)")
    dns_names = [n for n in names if not is_ip(n) and not n.startswith("*.")]
    ip_names = [n for n in names if is_ip(n)]
    if dns_names:
        # The override is used for SNI and the hostname check alike (docs/failures.md#hostname-mismatch).
        options.append(f"use --server-name {dns_names[0]}")
    if ip_names and ip_names[0] != host:
        options.append(f"dial {ip_names[0]}:{port}")
    flag = "--ip" if is_ip(checked) else "--dns"
    reissue = f"reissue the server certificate with {flag} {checked}"
    if finding is not None and finding.fix:
        reissue += f" (`{finding.fix}`)"
    options.append(reissue)
    fix = ", or ".join(options)
    return _with(
        first,
        evidence,
        cause=f"the server's certificate does not cover the name checked: {dialed}; {covers}{why}",
        fix=fix,
        certain=True,
    )


def _server_chain_diagnosis(first: Diagnosis, evidence: Evidence, finding: Finding) -> Diagnosis:
    proven = catalogue.by_doctor_finding(finding.id, "client")
    kind = proven.kind if proven is not None else first.kind if first.kind.startswith("server") else "server-cert-rejected"
    message = finding.message.rstrip(".")
    fix = finding.fix or first.fix
    if finding.id == "missing-intermediate":
        # The probe saw the chain on the wire, so "append to <file>" would name no file.
        fix = catalogue.by_kind("server-missing-intermediate").fix
    elif finding.id == "chain-untrusted":
        probe = evidence.probe
        issuer = f" ({probe.chain[-1].issuer})" if probe is not None and probe.chain else ""
        fix = f"pass the CA that issued it{issuer} with --ca, or have the server use a certificate from a CA in your --ca"
    elif finding.id in ("expired", "not-yet-valid", "wrong-eku", "issuer-not-ca"):
        fix = f"on the server's side: {fix}, then let the server reload it"
    return _with(
        first,
        evidence,
        kind=kind,
        cause=f"this client rejected the server's certificate: {message}",
        fix=fix,
        certain=True,
    )


def _client_rejected(first: Diagnosis, evidence: Evidence) -> Diagnosis:
    """mTLS, 'Socket closed': the server hung up on this client's certificate. Which reason?"""
    local = _errors(evidence.local)
    finding = _pick(local, catalogue.proofs("server"))
    refusal = catalogue.by_doctor_finding(finding.id, "server") if finding is not None else None
    if finding is not None and refusal is not None:
        kind, why = refusal.kind, refusal.why
        message = finding.message.rstrip(".")
        if finding.id == "chain-untrusted":
            # The client's --ca is what it trusts for the server; in a one-CA PKI the server
            # trusts the same CA for clients, so this is the likely reason, not a certainty.
            return _with(
                first,
                evidence,
                kind=kind,
                cause=f"the server refused this client's certificate during the handshake; most likely because "
                f"{why}: {message}",
                fix=refusal.fix,
                certain=False,
            )
        return _with(
            first,
            evidence,
            kind=kind,
            cause=f"the server refused this client's certificate during the handshake because {why}: {message}",
            fix=finding.fix or first.fix,
            certain=True,
        )
    probe = evidence.probe
    if probe is not None:
        alerted = next((f for f in _errors(probe.findings) if catalogue.by_probe_finding(f.id)), None)
        by_alert = catalogue.by_probe_finding(alerted.id) if alerted is not None else None
        if alerted is not None and by_alert is not None and by_alert.kind != "client-cert-rejected":
            return _with(
                first,
                evidence,
                kind=by_alert.kind,
                cause=f"the server refused this client's certificate: {alerted.message.rstrip('.')}",
                fix=alerted.fix or first.fix,
                certain=True,
            )
    return _with(first, evidence)


def combine(first: Diagnosis, evidence: Evidence, config: Dialing) -> Diagnosis:
    """The most specific cause: grpc's reading says *where* it failed, the probe and the doctor
    say *why*. Falls back to ``first`` (with the finding ids attached) when nothing decides."""
    probe = evidence.probe
    host, port = split_target(config.target)
    where = f"{host}:{port}"
    found = evidence.all()

    if probe is not None and not probe.tcp_connected:
        finding = _pick(found, ("connection-refused", "connect-timeout", "connect-failed"))
        if finding is not None and first.kind in ("connection-refused", "connect-timeout", "dns-failure", "other"):
            return _with(first, evidence, cause=finding.message.rstrip("."), fix=finding.fix or first.fix)
        return _with(first, evidence)

    if config.mode == "plaintext":
        if probe is not None and probe.tls:
            needs = ""
            flags = "--ca CA_FILE"
            if probe.client_cert_required:
                needs = ", and it requires a client certificate (mTLS)"
                flags += " plus --name CLIENT (or --cert FILE --key FILE)"
            return _with(
                first,
                evidence,
                kind="client-plaintext-server-tls",
                cause=f"the server at {where} speaks TLS ({probe.tls_version or 'TLS'}, ALPN {probe.alpn or 'none'}) "
                f"and hung up on this plaintext client{needs}",
                fix=f"drop --plaintext and dial with TLS: {flags}",
                certain=True,
            )
        return _with(first, evidence)

    not_tls = _pick(found, ("plaintext-server", "not-tls", "handshake-timeout", "no-alpn-h2"))
    if not_tls is not None and (probe is None or not probe.tls or not_tls.id == "no-alpn-h2"):
        kind = "server-not-tls" if not_tls.id in ("plaintext-server", "not-tls") else first.kind
        fix = (
            "dial it with --plaintext, or restart the server with TLS (`grpcpki serve --name NAME`)"
            if not_tls.id == "plaintext-server"
            else not_tls.fix or first.fix
        )
        return _with(first, evidence, kind=kind, cause=not_tls.message.rstrip("."), fix=fix, certain=True)

    chain = _server_chain(evidence)
    reading = catalogue.by_kind(first.kind)
    if first.kind == "hostname-mismatch" and probe is not None:
        return _hostname(first, evidence, config, _pick(chain, ("name-mismatch",)))
    if reading.refused_by == "client" and reading.narrows:
        finding = _pick(chain, reading.narrows)
        if finding is not None:
            return _server_chain_diagnosis(first, evidence, finding)
        return _with(first, evidence)

    if first.kind in ("server-rejected-client", "server-requires-client-cert"):
        if config.mode == "tls" and probe is not None and probe.client_cert_required:
            missing = catalogue.by_kind("client-cert-missing")
            return _with(
                first,
                evidence,
                kind=missing.kind,
                cause=missing.cause.format(where=where),
                fix=missing.fix,
                certain=True,
            )
        if config.mode == "mtls":
            return _client_rejected(first, evidence)
        return _with(first, evidence)

    if first.kind in _LOCAL_ONLY:
        finding = _pick(_errors(evidence.local), reading.narrows)
        finding = finding or next(iter(_errors(evidence.local)), None)
        if finding is not None:
            return _with(
                first,
                evidence,
                cause=f"this client's own TLS files are unusable: {finding.message.rstrip('.')}",
                fix=finding.fix or first.fix,
                certain=True,
            )
        return _with(first, evidence)

    # grpc could not say; anything the probe found wrong with the server, then with this client.
    finding = _pick(chain, catalogue.by_kind("server-cert-rejected").narrows)
    if finding is not None:
        return _server_chain_diagnosis(first, evidence, finding)
    if config.mode == "mtls" and _errors(evidence.local):
        return _client_rejected(first, evidence)
    return _with(first, evidence)
