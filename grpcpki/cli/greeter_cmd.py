"""``grpcpki serve`` and ``grpcpki greet``: the helloworld Greeter over mTLS, TLS or plaintext.

grpc is heavy to import, so :mod:`grpcpki.greeter.server` / ``.client`` are imported inside the
command bodies only: ``grpcpki --help`` and ``grpcpki list`` never load grpc.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from grpcpki.cli import console
from grpcpki.cli.console import err, info, out, render_error, success, warning
from grpcpki.cli.completion_cmd import complete_names
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import HOST_PORT, LISTEN_ADDRESS, CheckedPath, DurationType
from grpcpki.cli.stopping import stop_on_signals, stop_requested_by_signals
from grpcpki.engine.errors import GrpcpkiError, NotFoundError

if TYPE_CHECKING:
    from grpcpki.engine import CertInfo
    from grpcpki.greeter.client import CallResult, ClientConfig
    from grpcpki.diagnosis.explain import Diagnosis
    from grpcpki.diagnosis.serverlog import StderrRewriter
    from grpcpki.greeter.files import TlsFiles, TlsMaterial
    from grpcpki.greeter.server import CallRecord, GreeterServer, ReloadRecord

_FILE = CheckedPath(dir_okay=False, path_type=Path)


def _emit_json(data: dict[str, Any]) -> None:
    """One compact JSON object per line on stdout, flushed: a script can readline() it."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def _resolve_files(
    app: App,
    *,
    name: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    plaintext: bool,
    kind: str,
) -> TlsFiles:
    """--name NAME or --cert/--key/--ca -> TlsFiles; conflicting flags are usage errors (exit 2)."""
    from grpcpki.greeter.files import TlsFiles

    explicit = [flag for flag, value in (("--cert", cert), ("--key", key), ("--ca", ca)) if value is not None]
    if plaintext:
        if name or explicit:
            given = ["--name"] * bool(name) + explicit
            raise click.UsageError(f"--plaintext uses no certificates; drop {', '.join(given)}")
        return TlsFiles()
    if name and explicit:
        raise click.UsageError(
            f"--name {name} already gives the certificate, key and CA; drop {', '.join(explicit)}"
        )
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together (the certificate and its private key)")
    if name:
        pki = app.pki()
        try:
            # serve takes a server certificate and greet a client one, so a NAME that is both is not ambiguous.
            material = pki.material(name, prefer=kind)
        except NotFoundError:
            from grpcpki.diagnosis.store import revoked_instead

            revoked = revoked_instead(pki, name)
            if revoked is not None:
                raise revoked from None
            raise
        return TlsFiles(chain=material.chain_path, key=material.key_path, ca=material.trust_path)
    return TlsFiles(chain=cert, key=key, ca=ca)


def _warn_if_refused(material: TlsMaterial | None, *, role: str) -> None:
    """Warn about what peers will refuse (the doctor's errors on it), before the first handshake does."""
    if material is None or material.leaf is None or not material.chain_pem:
        return
    from grpcpki.diagnosis.store import preflight

    for finding in preflight(material.chain_pem, role):
        warning(f"peers will refuse it: {finding.message}")
        if finding.fix:
            console.fix_lines(finding.fix)


def _cert_summary(leaf: CertInfo) -> dict[str, Any]:
    return {
        "subject": leaf.subject,
        "serial": leaf.serial_hex,
        "sans": [str(s) for s in leaf.sans],
        "not_after": leaf.not_after.isoformat().replace("+00:00", "Z"),
        "fingerprint_sha256": leaf.fingerprint_sha256,
    }


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


# --------------------------------------------------------------------------------------- serve


@click.command("serve")
@click.option("--name", "-n", metavar="NAME", shell_complete=complete_names("server"), help="Server certificate from the PKI (as issued by `grpcpki issue server`).")
@click.option("--cert", type=_FILE, help="Certificate chain file to present (leaf first, then intermediates).")
@click.option("--key", type=_FILE, help="Private key of --cert.")
@click.option("--ca", type=_FILE, help="Trust bundle for client certificates (required for mTLS with --cert).")
@click.option(
    "--crl",
    type=_FILE,
    help="Refuse client certificates listed in this CRL (PEM, as `grpcpki revoke` writes), checked per call "
    "[default with --name: PKI/crl.pem].",
)
@click.option(
    "--listen",
    "-l",
    default="127.0.0.1:50051",
    show_default=True,
    type=LISTEN_ADDRESS,
    help="Address to listen on; port 0 picks a free port (printed at start).",
)
@click.option("--tls", "tls_only", is_flag=True, help="Server-side TLS only: do not ask clients for a certificate.")
@click.option("--plaintext", is_flag=True, help="No TLS at all (for comparison; never in production).")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="ID",
    help="Only this client identity may call (repeatable): an exact SPIFFE ID/URI, or a glob on DNS SAN or CN.",
)
@click.option(
    "--grace",
    type=DurationType(maximum=timedelta(hours=1), as_seconds=True),
    default="5s",
    show_default=True,
    metavar="DURATION",
    help="On SIGINT/SIGTERM, time in-flight calls get to finish.",
)
@click.option(
    "--delay",
    type=DurationType(maximum=timedelta(hours=1), as_seconds=True),
    default="0s",
    metavar="DURATION",
    help="Wait this long before each reply (to watch deadlines and graceful shutdown).",
)
@click.option(
    "--log-calls", is_flag=True,
    help="Log every successful call. By default only the first call of each client identity is logged and "
    "the rest are counted (the counts are printed on exit); refused calls are always logged.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line on stdout when listening (for scripts).")
@pki_options
@pass_app
def serve(
    app: App,
    name: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    crl: Path | None,
    listen: str,
    tls_only: bool,
    plaintext: bool,
    allow: tuple[str, ...],
    grace: float,
    delay: float,
    log_calls: bool,
    as_json: bool,
) -> None:
    """Run the helloworld Greeter server with mTLS (default), --tls or --plaintext.

    SayHello replies "Hello NAME". Each call's peer identity (SPIFFE ID / URI SAN, else DNS
    SAN, else CN) is logged to stderr on its first call (every call with --log-calls; the
    counts are printed on exit); with --allow, other identities get PERMISSION_DENIED.
    Certificate, key and CA files are re-read when they change, so rotation needs no restart
    (a new pair that does not match is not loaded: the old one stays, and the log says why).
    In mTLS, each call's client certificate is checked against the CRL (the PKI's crl.pem with
    --name, or --crl FILE): after `grpcpki revoke`, the next call of a revoked client gets
    UNAUTHENTICATED, without a restart.
    grpc's own "Handshake failed" lines on stderr are the only place that tells why a client
    was refused during the handshake.

    \b
    Examples:
      grpcpki serve --name localhost
      grpcpki serve --name localhost --allow spiffe://example.org/web --allow '*.internal'
      grpcpki serve --cert server.crt --key server.key --ca ca.crt --listen 0.0.0.0:8443
      grpcpki serve --cert server.crt --key server.key --ca ca.crt --crl crl.pem
      grpcpki serve --name localhost --tls            # clients need no certificate
      grpcpki serve --listen 127.0.0.1:0 --name localhost --json   # prints the port picked
      grpcpki serve --name localhost --log-calls      # a line for every call
    """
    if tls_only and plaintext:
        raise click.UsageError("choose one of --tls and --plaintext")
    mode = "plaintext" if plaintext else "tls" if tls_only else "mtls"
    if allow and mode != "mtls":
        raise click.UsageError(f"--allow needs client certificates, which --{mode} does not ask for; drop one")
    if crl is not None and mode != "mtls":
        raise click.UsageError(f"--crl checks client certificates, which --{mode} does not ask for; drop one")
    files = _resolve_files(app, name=name, cert=cert, key=key, ca=ca, plaintext=plaintext, kind="server")
    # With --name the PKI's crl.pem is checked even before it exists (the first `grpcpki revoke`
    # creates it); an explicit --crl must exist.
    crl_file = crl
    if crl_file is None and name and mode == "mtls":
        crl_file = app.pki().path / "crl.pem"
    if mode == "mtls" and files.ca is None:
        raise click.UsageError("mTLS needs --ca (the CA that issued client certificates), or --tls to not ask for one")
    if mode != "plaintext" and files.chain is None:
        raise click.UsageError("a TLS server needs --name NAME, or --cert FILE and --key FILE")

    from grpcpki.greeter.errors import MODE_WORDS
    from grpcpki.greeter.files import describe_trust
    from grpcpki.greeter.identity import AllowList
    from grpcpki.greeter.server import GreeterServer, ServerConfig

    def on_call(record: CallRecord) -> None:
        # Names and identities come from the network: escape them, rich would read "[...]" as markup.
        who, called = escape(record.identity.display), escape(f"SayHello({record.name!r})")
        if record.code == "OK":
            err().print(f"{_clock()} [green]OK[/] {called} from [bold]{who}[/] ({record.peer})", highlight=False)
        elif record.revoked is not None:
            r = record.revoked
            # grpcpki names a certificate by its CN; a foreign one may have none.
            cn = record.identity.common_name
            command = f"grpcpki issue client {escape(cn) if cn else 'NAME'}"
            err().print(
                f"{_clock()} [red]{record.code}[/] {called} from [bold]{who}[/] ({record.peer}): refused a revoked "
                f"client certificate, serial {r.serial_hex} is listed in {escape(str(r.crl))} (updated "
                f"{r.updated_words}) — the client needs a new certificate (`{command}`)",
                highlight=False,
            )
        elif record.code != "PERMISSION_DENIED":
            err().print(f"{_clock()} [red]{record.code}[/] {called} from [bold]{who}[/] ({record.peer}): refused, "
                        f"{escape(record.message)}", highlight=False)
        else:
            from grpcpki.diagnosis.explain import spiffe_as_dns_note

            allowed = escape(", ".join(allow))
            note = spiffe_as_dns_note(record.identity.dns)
            advice = escape(note) if note else f" — add `--allow {who}` to let it call"
            err().print(
                f"{_clock()} [red]{record.code}[/] {called} from [bold]{who}[/] ({record.peer}): refused, this "
                f"identity is not in --allow (allowed: {allowed}){advice}",
                highlight=False,
            )

    def on_reload(record: ReloadRecord) -> None:
        if record.loaded:
            success(f"{_clock()} {record.message}")
        else:
            warning(f"{_clock()} {record.message}")

    config = ServerConfig(
        listen=listen,
        mode=mode,  # type: ignore[arg-type]
        files=files,
        allow=AllowList.of(allow),
        grace=grace,
        delay=delay,
        crl=crl_file,
        crl_must_exist=crl is not None,
        log_ok_calls="all" if log_calls else "first",
    )
    server = GreeterServer(config, on_call=on_call, on_reload=on_reload)
    started = server.start()
    material = started.material
    if material is not None:
        _warn_if_refused(material, role="server")

    stop = stop_requested_by_signals()

    if as_json:
        _emit_json(
            {
                "event": "listening",
                "address": started.address,
                "host": started.host,
                "port": started.port,
                "mode": mode,
                "trusted_cas": [_cert_summary(t) for t in material.trusted] if material else [],
                "certificate": _cert_summary(material.leaf) if material and material.leaf else None,
                "allow": list(config.allow.patterns),
                "crl": str(crl_file) if server.revocation is not None else None,
                "revoked_serials": server.revocation.revoked_count if server.revocation is not None else None,
                "pid": os.getpid(),
            }
        )
    line = f"serving helloworld.Greeter on {started.address} — {MODE_WORDS[mode]}"
    if material is not None and material.leaf is not None:
        line += f"; certificate {material.leaf.subject} (serial {material.leaf.serial_hex[:16]}…)"
    if mode == "mtls" and material is not None:
        line += f"; trusting clients from {describe_trust(material)}"
        line += f"; allowing {', '.join(allow)}" if allow else "; allowing any client certificate it issued"
    if server.revocation is not None:
        count = server.revocation.revoked_count
        state = f"{count} revoked" if server.revocation.path.is_file() else "not written yet"
        line += f"; refusing revoked client certificates listed in {crl_file} ({state})"
    success(line)
    info("Ctrl-C or SIGTERM to stop")

    rewriter = _handshake_log_rewriter(server) if mode != "plaintext" else None
    try:
        stop.wait()
        info(f"{stop.name} received: finishing in-flight calls (up to {grace:g} s)")
        server.stop(grace)
    finally:
        if rewriter is not None:
            rewriter.stop()
    info(_call_summary(server.call_counts(), server.identities_seen))
    if as_json:
        _emit_json({"event": "stopped", "calls": server.call_counts()})
    success("stopped")


def _call_summary(counts: dict[str, int], identities: int) -> str:
    """'served 1,204 calls: 1,200 OK (from 3 identities), 4 PERMISSION_DENIED'."""
    total = sum(counts.values())
    if not total:
        return "served no calls"
    parts = []
    for code, count in sorted(counts.items(), key=lambda item: (item[0] != "OK", item[0])):
        part = f"{count:,} {code}"
        if code == "OK" and identities:
            part += f" (from {identities:,} {'identity' if identities == 1 else 'identities'})"
        parts.append(part)
    return f"served {total:,} call{'' if total == 1 else 's'}: {', '.join(parts)}"


def _handshake_log_rewriter(server: GreeterServer) -> StderrRewriter | None:
    """Rewrite grpc core's 'Handshake failed ...' lines on stderr into plain words.

    A rejected handshake never reaches Python (docs/failures.md#server-rejected-client); grpc
    core's own log line on fd 2 is the only trace, so the descriptor is routed through a pipe
    (grpcpki.diagnosis.serverlog). The trusted CAs and server names are read at each line, so
    they follow a hot reload. With GRPC_VERBOSITY=ERROR grpc drops the I-level lines itself.
    """
    from grpcpki.diagnosis.serverlog import StderrRewriter, explain_grpc_line

    def rewrite(line: str) -> str | None:
        material = server.reloader.current if server.reloader is not None else None
        trusted = ", ".join(t.subject for t in material.trusted) if material and material.trusted else None
        names = [str(s) for s in material.leaf.sans] if material and material.leaf else []
        words = explain_grpc_line(line, trusted=trusted, names=names)
        return f"{_clock()} handshake: {words}" if words is not None else None

    rewriter = StderrRewriter(rewrite)
    return rewriter if rewriter.start() else None


# --------------------------------------------------------------------------------------- greet


@click.command("greet")
@click.option("--name", "-n", metavar="NAME", shell_complete=complete_names("client"), help="Client certificate from the PKI (as issued by `grpcpki issue client`).")
@click.option("--cert", type=_FILE, help="Client certificate chain file.")
@click.option("--key", type=_FILE, help="Private key of --cert.")
@click.option("--ca", type=_FILE, help="Trust bundle for the server certificate (default: grpc's public roots).")
@click.option(
    "--server",
    "-s",
    "target",
    default="localhost:50051",
    show_default=True,
    type=HOST_PORT,
    help="Server to dial; HOST is the name checked against the server certificate's SANs.",
)
@click.option(
    "--server-name",
    metavar="NAME",
    help="Check the server certificate (and send SNI) for NAME instead of HOST (grpc.ssl_target_name_override).",
)
@click.option("--to", "--message", "-m", "to", default="world", show_default=True, metavar="NAME", help="Name to greet.")
@click.option(
    "--count", "-c", type=click.IntRange(min=0), default=1, show_default=True, help="Calls to make; 0 = until Ctrl-C."
)
@click.option(
    "--interval",
    type=DurationType(maximum=timedelta(days=1), as_seconds=True),
    default="1s",
    show_default=True,
    metavar="DURATION",
    help="Pause between calls.",
)
@click.option(
    "--new-connection",
    is_flag=True,
    help="Fresh connection per call, re-reading certificate, key and CA files (follows rotation).",
)
@click.option(
    "--timeout", type=DurationType(timedelta(milliseconds=1), timedelta(hours=1), as_seconds=True), default="5s",
    show_default=True, metavar="DURATION", help="Deadline of each call (e.g. 5s, 500ms)."
)
@click.option("--tls-only", is_flag=True, help="Verify the server but send no client certificate.")
@click.option("--plaintext", is_flag=True, help="No TLS at all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per call on stdout, then a summary line.")
@click.option("--verbose", "-v", is_flag=True, help="Show grpc's raw error strings and log lines.")
@pki_options
@pass_app
def greet(
    app: App,
    name: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    target: str,
    server_name: str | None,
    to: str,
    count: int,
    interval: float,
    new_connection: bool,
    timeout: float,
    tls_only: bool,
    plaintext: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Call SayHello on a Greeter server and explain any failure in plain words.

    Exits 0 when every call succeeded, 1 otherwise. A failed call shows its gRPC status,
    a first reading of the cause and what to try. Some causes cannot be told apart from
    the client side (a server closing the handshake looks the same for a missing, expired
    or untrusted client certificate); the server's log then has the answer.

    \b
    Examples:
      grpcpki greet --name web
      grpcpki greet --name web --server 127.0.0.1:50051 --server-name localhost
      grpcpki greet --cert client.crt --key client.key --ca ca.crt --to Alice
      grpcpki greet --name web --count 0 --interval 2s --new-connection   # watch a rotation
      grpcpki greet --name web --tls-only        # what a client without a certificate sees
      grpcpki greet --name web --json | jq .status
    """
    if tls_only and plaintext:
        raise click.UsageError("choose one of --tls-only and --plaintext")
    if tls_only and (cert or key):
        raise click.UsageError("--tls-only sends no client certificate; drop --cert/--key")
    if plaintext and server_name:
        raise click.UsageError("--server-name is for TLS; drop it with --plaintext")
    mode = "plaintext" if plaintext else "tls" if tls_only else "mtls"
    files = _resolve_files(app, name=name, cert=cert, key=key, ca=ca, plaintext=plaintext, kind="client")
    if mode == "mtls" and files.chain is None:
        raise click.UsageError(
            "mTLS needs a client certificate: pass --name NAME or --cert FILE --key FILE (or --tls-only to send none)"
        )
    if not verbose:
        # grpc prints its own handshake log lines to stderr; greet explains failures itself.
        # Must be set before grpc is first imported (below).
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

    from grpcpki.diagnosis.explain import tail
    from grpcpki.greeter.client import ClientConfig, GreeterClient, identity_of
    from grpcpki.greeter.errors import MODE_WORDS

    config = ClientConfig(
        target=target,
        mode=mode,  # type: ignore[arg-type]
        files=files,
        server_name=server_name,
        timeout=timeout,
        new_connection=new_connection,
    )
    client = GreeterClient(config)
    material: TlsMaterial | None = client.connect()
    if material is not None:
        _warn_if_refused(material, role="client")
    if not as_json:
        who = identity_of(material)
        line = f"greeting {target} over {MODE_WORDS[mode]}"
        if who:
            line += f" as {who}"
        if mode != "plaintext":
            line += f", trusting {files.ca or 'grpc public roots'}"
            if server_name:
                line += f", checking the server certificate for {server_name!r}"
        info(line)

    results: list[CallResult] = []
    explain_failure = _failure_explainer(app, config)
    seq = 0
    # ^C or SIGTERM ends a loop after the call in hand, with the summary.
    try:
        with stop_on_signals() as stop:
            while (count == 0 or seq < count) and not stop:
                seq += 1
                if seq > 1 and interval and stop.wait(interval):
                    break
                result = client.say_hello(to, seq=seq)
                if not result.ok:
                    result = explain_failure(result)
                results.append(result)
                _report(result, as_json=as_json, verbose=verbose, many=count != 1, tail=tail)
    finally:
        client.close()

    failed = sum(1 for r in results if not r.ok)
    if as_json:
        latencies = [r.latency_ms for r in results if r.ok]
        _emit_json(
            {
                "summary": True,
                "target": target,
                "mode": mode,
                "calls": len(results),
                "ok": len(results) - failed,
                "failed": failed,
                "latency_ms_max": round(max(latencies), 3) if latencies else None,
            }
        )
    elif len(results) != 1:
        words = f"{len(results)} calls: {len(results) - failed} OK, {failed} failed"
        (warning if failed else success)(words)
    if failed:
        raise click.exceptions.Exit(1)


def _failure_explainer(app: App, config: ClientConfig) -> Callable[[CallResult], CallResult]:
    """Replace grpc's first reading of a failed call with the specific cause, found by a live
    probe and the doctor (grpcpki.diagnosis.failure). Once per distinct failure: a loop of
    identical failures probes once, and the success path never pays for it."""
    from grpcpki.diagnosis.failure import diagnose_failure, failure_key

    cache: dict[tuple[object, ...], Diagnosis] = {}
    pki_view: tuple[list[bytes], dict[str, str]] | None = None

    def explain_failure(result: CallResult) -> CallResult:
        nonlocal pki_view
        key = failure_key(result)
        if key not in cache:
            if pki_view is None:
                pki_view = _pki_view(app)
            known, owners = pki_view
            cache[key] = diagnose_failure(result, config, known_cas=known, owners=owners)
        return dataclasses.replace(result, diagnosis=cache[key])

    return explain_failure


def _pki_view(app: App) -> tuple[list[bytes], dict[str, str]]:
    """The PKI's intermediates (to name a missing one) and its certificates by serial (so a fix
    reissues the PKI's own certificate in place), if there is a PKI."""
    from grpcpki.diagnosis.store import known_cas, owners
    from grpcpki.engine.pki import Pki

    if not Pki.exists(app.pki_path):
        return [], {}
    try:
        pki = app.pki()
        return known_cas(pki), owners(pki)
    except GrpcpkiError:
        return [], {}


def _report(result: CallResult, *, as_json: bool, verbose: bool, many: bool, tail: Any) -> None:
    if as_json:
        data = result.to_dict()
        if verbose and result.debug_error:
            data["debug_error_string"] = result.debug_error
        _emit_json(data)
        return
    prefix = f"#{result.seq} " if many else ""
    if result.ok:
        out().print(result.reply, markup=False, highlight=False)
        seen = f"; the server saw you as {result.identity}" if result.identity else ""
        success(f"{prefix}OK in {result.latency_ms:.1f} ms{seen}")
        return
    diagnosis = result.diagnosis
    cause = diagnosis.cause if diagnosis else (result.details or "unknown failure")
    render_error(f"{prefix}{result.code} after {result.latency_ms:.1f} ms: {cause}", diagnosis.fix if diagnosis else None)
    if diagnosis is not None:
        console.fix_lines(diagnosis.fix)
    if verbose and result.debug_error:
        err().print(f"  grpc: {result.debug_error}", markup=False, highlight=False, style="dim")
    elif result.details:
        err().print(f"  grpc said: {tail(result.details)}", markup=False, highlight=False, style="dim")
    if verbose and diagnosis is not None:
        for line in diagnosis.evidence:
            err().print(f"  found: {line}", markup=False, highlight=False, style="dim")
