"""``grpcpki doctor`` (static checks, no network) and ``grpcpki probe`` (a live TLS handshake).

Both are thin: the checks are :mod:`grpcpki.diagnosis.store` / :mod:`grpcpki.diagnosis.doctor` and
:mod:`grpcpki.diagnosis.probe`; this module resolves flags to files and renders findings. Text
from certificates goes to rich as plain Text; suggested commands are printed on their own lines,
outside the panels, never wrapped (grpcpki.cli.console.fix_lines). Exit code
1 when any finding is an error, so either can gate a deploy (``grpcpki doctor && deploy``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grpcpki.cli import console
from grpcpki.cli.completion_cmd import complete_names
from grpcpki.cli.context import PASSPHRASE_ENV, App, pass_app, pki_options
from grpcpki.cli.params import HOST_PORT, CheckedPath, DurationType
from grpcpki.engine.errors import GrpcpkiError

if TYPE_CHECKING:
    from grpcpki.diagnosis.findings import Finding
    from grpcpki.diagnosis.probe import ProbeResult
    from grpcpki.diagnosis.store import Checked
    from grpcpki.engine.certs import CertInfo
    from grpcpki.engine.consistency import StoreProblem

_FILE = CheckedPath(dir_okay=False, path_type=Path)
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "blue"}
_KIND_WORDS = {
    "server": "server certificate",
    "client": "client certificate",
    "root": "root CA",
    "intermediate": "intermediate CA",
    "cross": "cross-signed CA",
    "trust-bundle": "",
    "certificate": "certificate",
}


def _findings_table(findings: Sequence[Finding]) -> Table:
    """One row per finding: severity (coloured), the sentence, the fix, the stable id (dim)."""
    table = Table(show_header=False, box=None, pad_edge=False, expand=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_column(style="dim", no_wrap=True)
    for f in findings:
        style = _SEVERITY_STYLE.get(f.severity.value, "")
        text = Text(f.message)
        if f.fix:
            text.append("\nfix: ", style="cyan")
            text.append(f.fix)
        table.add_row(Text(f.severity.value, style=style), text, Text(f.id))
    return table


def _fix_commands(findings: Sequence[Finding]) -> None:
    """The findings' commands below the panel, one per line: copied from there, they run as meant."""
    fixes = [f.fix for f in findings if f.fix and console.commands_in(f.fix)]
    if not fixes:
        return
    out = console.out()
    out.print(Text("  to fix, run:"))
    done: set[str] = set()
    for fix in fixes:
        for command in console.commands_in(fix):
            if command not in done:
                done.add(command)
                console.fix_lines(command, console=out)


def _exit_for(findings: Sequence[Finding]) -> None:
    from grpcpki.diagnosis.findings import has_errors

    if has_errors(findings):
        raise click.exceptions.Exit(1)


def _counts(findings: Sequence[Finding]) -> str:
    errors = sum(1 for f in findings if f.severity.value == "error")
    warnings = sum(1 for f in findings if f.severity.value == "warning")
    parts = [f"{errors} error{'s' * (errors != 1)}"] if errors else []
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------- doctor


@click.command("doctor")
@click.argument("name", required=False, metavar="[NAME]", shell_complete=complete_names())
@click.option("--cert", type=_FILE, help="Certificate chain file to check (leaf first, then intermediates).")
@click.option("--key", type=_FILE, help="Private key of --cert.")
@click.option(
    "--ca",
    type=_FILE,
    help="Trust bundle the peer verifies --cert with [default: the PKI's ca.crt, if there is a PKI].",
)
@click.option(
    "--role",
    type=click.Choice(["server", "client"]),
    default=None,
    help="Check --cert as a server or client certificate [default: from its extended key usage].",
)
@click.option("--host", metavar="HOST", help="The name clients dial: check the server certificate covers it.")
@click.option(
    "--crl",
    type=_FILE,
    help="Report certificates this CRL (PEM or DER) revokes [default: the PKI's crl.pem, once `grpcpki revoke` wrote it].",
)
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON (stable ids) for scripts.")
@click.option("--store", "store_only", is_flag=True, help="Check the PKI store itself: files against inventory rows, "
              "leftovers of interrupted commands, crl.pem (docs/security.md).")
@click.option("--repair", is_flag=True, help="With --store: repair what is safe (finish interrupted changes, delete "
              "temp files, record untracked certificates, re-sign crl.pem).")
@pki_options
@pass_app
def doctor(
    app: App,
    name: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    role: str | None,
    host: str | None,
    crl: Path | None,
    as_json: bool,
    store_only: bool = False,
    repair: bool = False,
) -> None:
    """Check certificates, keys and trust bundles offline, and say how to fix what is wrong.

    With NAME, the inventory certificate of that name; with --cert/--key/--ca, those files;
    with neither, the whole PKI: every active certificate, the CA certificates and keys, and
    ca.crt. Each finding has a stable id (see --json), a plain sentence and a fix. Exits 1 when
    any finding is an error, 0 otherwise, so it can gate a deploy. No network: for a live look
    at a running server use `grpcpki probe`.

    \b
    Examples:
      grpcpki doctor                                   # the whole PKI
      grpcpki doctor localhost --host api.internal     # will clients dialing api.internal accept it?
      grpcpki doctor web
      grpcpki doctor --cert server.crt --key server.key --ca ca.crt --role server --host 10.0.0.7
      grpcpki doctor --cert client.crt --crl revoked.crl       # is it revoked?
      grpcpki doctor --json | jq -r '.checked[].findings[] | select(.severity=="error") | .id'
      grpcpki doctor --store --repair                  # the store after a crash or a hand edit
    """
    from grpcpki.diagnosis import store as diagnosis
    from grpcpki.engine.pki import Pki

    explicit = [flag for flag, value in (("--cert", cert), ("--key", key), ("--ca", ca)) if value is not None]
    if repair and not store_only:
        raise click.UsageError("--repair repairs the store: use it with --store")
    if store_only:
        if name or explicit or host or role or crl:
            raise click.UsageError("--store checks the whole PKI store; drop NAME and the file options")
        from grpcpki.cli.store_report import doctor_store

        doctor_store(app, repair=repair, as_json=as_json)
        return
    if name and explicit:
        raise click.UsageError(f"NAME already gives the certificate, key and CA; drop {', '.join(explicit)}")
    if name and role:
        raise click.UsageError(f"--role: the role of {name} comes from the inventory; drop --role")
    if cert is None and (key is not None or ca is not None):
        raise click.UsageError("--key and --ca check --cert FILE; pass --cert too")
    if role == "client" and host:
        raise click.UsageError("--host is the name clients dial, a server check; drop it with --role client")
    if role and cert is None:
        raise click.UsageError("--role applies to --cert FILE; a PKI check takes each certificate's own role")
    if crl is not None and not crl.is_file():
        raise click.BadParameter(f"{crl} does not exist", param_hint="--crl")

    have_pki = Pki.exists(app.pki_path)
    store_problems: list[StoreProblem] = []
    if name is not None and app.pki().find(name).key_path is None:
        # Signed from a CSR: its key is with the requester, so check the certificate alone.
        pki = app.pki()
        record = pki.find(name)
        if host and record.kind != "server":
            raise click.UsageError(f"--host is the name clients dial; {name} is a client certificate")
        checked = [diagnosis.doctor_record(pki, record, host=host, known=diagnosis.known_cas(pki),
                                           crl=crl or diagnosis.pki_crl(pki))]
        scope = f"{record.kind} certificate {name}"
    elif name is not None:
        pki = app.pki()
        material = pki.material(name)
        if host and material.role.value != "server":
            raise click.UsageError(f"--host is the name clients dial; {name} is a client certificate")
        # Without --host, a server is checked for every name the inventory says it was issued for.
        record_sans = list(pki.find(name).sans)
        checked = [
            diagnosis.doctor_material(
                material, host=host, known=diagnosis.known_cas(pki), sans=record_sans, crl=crl or diagnosis.pki_crl(pki)
            )
        ]
        scope = f"{material.role.value} certificate {name}"
    elif cert is not None:
        known: list[bytes] = []
        if have_pki:
            pki = app.pki()
            known = diagnosis.known_cas(pki)
            crl = crl or diagnosis.pki_crl(pki)
            if ca is None:
                ca = pki.trust_bundle_path
                if not as_json:
                    console.info(f"checking against {ca} (this PKI's trust bundle); pass --ca to use another")
        guessed = role or ("server" if host else diagnosis.guess_role(cert))
        if role is None and not as_json:
            console.info(
                f"checking {cert} as a {guessed} certificate (from its extended key usage); --role to choose"
                if guessed
                else f"{cert} does not say whether it is a server or client certificate; pass --role to check its usage"
            )
        checked = [diagnosis.doctor_files(cert, key, ca=ca, role=guessed, host=host, known=known, crl=crl)]
        scope = str(cert)
    else:
        pki = app.pki()  # NoCAError: one line with the hint to run init-ca
        checked = diagnosis.doctor_pki(pki, host=host, passphrase=_passphrase_if_given(app), crl=crl)
        scope = f"the PKI in {pki.path}"
        from grpcpki.engine.consistency import check_store

        store_problems = check_store(pki, thorough=False)  # the cheap part of `doctor --store`

    findings = [f for item in checked for f in item.findings]
    store_errors = any(p.severity == "error" for p in store_problems)
    if as_json:
        console.print_json(
            {
                "ok": all(item.ok for item in checked) and not store_errors,
                "errors": sum(item.errors for item in checked),
                "warnings": sum(item.warnings for item in checked),
                "checked": [item.to_dict() for item in checked],
            }
            | ({"store": [p.to_dict() for p in store_problems]} if store_problems else {})
        )
    else:
        _render_checked(checked)
        from grpcpki.cli.store_report import render

        render(store_problems)
        summary = _counts(findings) or ("store problems" if store_errors else "")
        if store_errors and not any(item.errors for item in checked):
            console.err().print(f"[bold red]✗[/] {escape(scope)}: {summary}", highlight=False)
            raise click.exceptions.Exit(1)
        if any(item.errors for item in checked):
            console.err().print(f"[bold red]✗[/] {escape(scope)}: {summary}", highlight=False)
        elif summary:
            console.success(f"{scope}: no errors ({summary})")
        else:
            console.success(f"{scope}: no problems found")
    _exit_for(findings)


def _passphrase_if_given(app: App) -> bytes | None:
    """The CA passphrase only if one was supplied non-interactively: doctor never prompts."""
    if app.passphrase_file or os.environ.get(PASSPHRASE_ENV):
        return app.passphrase()
    return None


def _title(item: Checked) -> str:
    kind = _KIND_WORDS.get(item.kind, item.kind)
    return escape(f"{kind} {item.name}".strip())


def _render_checked(items: Sequence[Checked]) -> None:
    out = console.out()
    for item in items:
        if not item.findings:
            checked_for = f" (clients dialing {', '.join(item.hosts)} accept it)" if item.hosts else ""
            out.print(f"[green]✓[/] {_title(item)}: no problems{escape(checked_for)}", highlight=False)
            continue
        style = "red" if item.errors else "yellow" if item.warnings else "blue"
        mark = "✗" if item.errors else "!" if item.warnings else "i"
        subtitle = escape(", ".join(item.paths)) if item.paths else None
        out.print(
            Panel(
                _findings_table(item.findings),
                title=f"[{style}]{mark}[/] {_title(item)}",
                title_align="left",
                subtitle=subtitle,
                subtitle_align="left",
                border_style=style,
            )
        )
        _fix_commands(item.findings)


# --------------------------------------------------------------------------------------- probe


@click.command("probe")
@click.argument("target", metavar="HOST:PORT", type=HOST_PORT)
@click.option("--ca", type=_FILE, help="Trust bundle to verify the server with [default: the PKI's ca.crt].")
@click.option("--name", "-n", metavar="CLIENT", shell_complete=complete_names("client"), help="Also try a mutual handshake with this client certificate from the PKI.")
@click.option("--cert", type=_FILE, help="Client certificate chain for a mutual handshake.")
@click.option("--key", type=_FILE, help="Private key of --cert.")
@click.option(
    "--server-name",
    metavar="NAME",
    help="Check the certificate (and send SNI) for NAME instead of HOST, like grpc.ssl_target_name_override.",
)
@click.option(
    "--timeout",
    type=DurationType(timedelta(milliseconds=1), timedelta(hours=1), as_seconds=True),
    default="5s",
    show_default=True,
    metavar="DURATION",
    help="Per connection attempt.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stable finding ids) for scripts.")
@pki_options
@pass_app
def probe(
    app: App,
    target: str,
    ca: Path | None,
    name: str | None,
    cert: Path | None,
    key: Path | None,
    server_name: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Handshake with a running server and report what a gRPC client will run into.

    Shows the TLS version and ALPN, the certificate chain the server presents (validity, SANs),
    whether it asks for or requires a client certificate, whether the chain verifies for the
    name dialed, and, with a client certificate, whether the server accepts it. Plaintext
    servers, ports that do not speak TLS and closed ports are named as such. Exits 1 when any
    finding is an error. Only HOST is contacted; no gRPC call is made.

    \b
    Examples:
      grpcpki probe localhost:50051
      grpcpki probe localhost:50051 --name web          # and a mutual handshake as client "web"
      grpcpki probe 10.0.0.7:443 --server-name api.internal --ca ca.crt
      grpcpki probe api.example.com:443 --cert client.crt --key client.key --json
    """
    from grpcpki.diagnosis.probe import probe as run_probe
    from grpcpki.diagnosis.store import known_cas, owners
    from grpcpki.engine.address import split_target
    from grpcpki.engine.pki import Pki

    host, port_text = split_target(target)
    if name and (cert or key):
        raise click.UsageError(f"--name {name} already gives the client certificate; drop --cert/--key")
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together (the client certificate and its private key)")

    known: list[bytes] = []
    pki_owners: dict[str, str] = {}
    if name:
        pki = app.pki()
        material = pki.material(name, prefer="client")
        cert, key = material.chain_path, material.key_path
        ca = ca or material.trust_path
        known, pki_owners = known_cas(pki), owners(pki)
    elif Pki.exists(app.pki_path):
        pki = app.pki()
        ca = ca or pki.trust_bundle_path
        known, pki_owners = known_cas(pki), owners(pki)
    ca_pem = _read_ca(ca) if ca is not None else None

    checked_name = server_name or host
    with console.err().status(f"probing {target} (TLS handshake, checking the certificate for {checked_name})…"):
        result = run_probe(
            host,
            int(port_text),
            server_name=server_name,
            ca_pem=ca_pem,
            client_cert_path=cert,
            client_key_path=key,
            timeout=timeout,
            known_cas=known,
            owners=pki_owners,
        )
    if as_json:
        console.print_json(result.to_dict() | {"ok": result.ok, "ca": str(ca) if ca else None})
    else:
        _render_probe(result, ca=ca, client=cert)
    _exit_for(result.findings)


def _read_ca(path: Path) -> bytes:
    from grpcpki.engine.storage import read_file

    try:
        return read_file(path, "trust bundle")
    except GrpcpkiError as exc:
        raise GrpcpkiError(f"cannot read --ca: {exc.message}", "check the path of the trust bundle") from None


def _yes_no(value: bool | None, yes: str, no: str, unknown: str = "could not tell") -> str:
    return unknown if value is None else yes if value else no


def _render_probe(result: ProbeResult, *, ca: Path | None, client: Path | None) -> None:
    out = console.out()
    where = f"{result.host}:{result.port}"
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("target", escape(f"{where}, certificate checked for {result.server_name!r}, SNI {result.sni or 'none (IP address, like gRPC)'}"))
    if not result.tcp_connected:
        facts.add_row("connection", "[red]✗ no TCP connection[/]")
    elif not result.tls:
        facts.add_row("connection", "TCP connected")
        facts.add_row("TLS", "[red]✗ this port does not complete a TLS handshake[/]")
    else:
        facts.add_row("connection", "TCP connected")
        alpn = result.alpn or "none"
        alpn_text = f"[green]{alpn}[/]" if result.alpn == "h2" else f"[red]{escape(alpn)}[/] (gRPC needs h2)"
        facts.add_row("TLS", escape(f"{result.tls_version or '?'}, {result.cipher or '?'}") + f", ALPN {alpn_text}")
        if result.client_cert_required:
            asks = "[bold]required[/] (mTLS: clients without a certificate are refused)"
        elif result.client_cert_requested:
            asks = "requested, but clients without one are accepted"
        else:
            asks = _yes_no(result.client_cert_requested, "requested", "not requested (server-side TLS only)")
        facts.add_row("client certificate", asks)
        if result.verified is None:
            verify = "[yellow]not checked[/] (no --ca and no PKI: pass --ca FILE)"
        elif result.verified:
            verify = f"[green]✓[/] chain verifies for {escape(repr(result.server_name))} against {escape(str(ca))}"
        else:
            verify = f"[red]✗[/] for {escape(repr(result.server_name))} against {escape(str(ca))}: {escape(result.verify_detail or '')}"
        facts.add_row("verification", verify)
        if result.mutual_ok is None:
            mutual = "not tried (pass --name CLIENT or --cert/--key)" if client is None else "not tried"
        elif result.mutual_ok:
            mutual = f"[green]✓[/] the server accepted {escape(str(client))}"
        else:
            mutual = f"[red]✗[/] the server refused {escape(str(client))}"
        facts.add_row("mutual handshake", mutual)
        if result.http2 is not None:
            facts.add_row("HTTP/2", "the server answered the HTTP/2 preface" if result.http2 else "[yellow]no HTTP/2 SETTINGS came back[/]")
    out.print(facts)
    if result.chain:
        out.print(_chain_table(result.chain, complete=result.chain_complete))
    if result.findings:
        style = "red" if not result.ok else "yellow"
        out.print(Panel(_findings_table(result.findings), title="findings", title_align="left", border_style=style))
        _fix_commands(result.findings)
    summary = _counts(result.findings)
    if not result.ok:
        console.err().print(f"[bold red]✗[/] {escape(where)}: {summary}", highlight=False)
    elif result.client_cert_required and result.mutual_ok is None:
        console.success(
            f"{where}: the server side looks right; it requires a client certificate, so try one with "
            "--name CLIENT or --cert/--key" + (f" ({summary})" if summary else "")
        )
    else:
        console.success(f"{where}: a gRPC client with these settings can connect" + (f" ({summary})" if summary else ""))


def _chain_table(chain: Sequence[CertInfo], *, complete: bool) -> Table:
    now = datetime.now(UTC)
    title = "certificates the server presents" + ("" if complete else " (leaf only: the rest could not be read)")
    table = Table(title=title, title_justify="left")
    for column in ("#", "subject", "issuer", "valid", "SANs"):
        table.add_column(column, overflow="fold")
    for index, info in enumerate(chain):
        state = info.validity_state(now)
        if state == "expired":
            valid = f"[bold red]expired {console.relative(info.not_after, now)}[/] ({info.not_after:%Y-%m-%d})"
        elif state == "not-yet-valid":
            valid = f"[bold red]not before {info.not_before:%Y-%m-%d %H:%M}[/] ({console.relative(info.not_before, now)})"
        else:
            style = console.expiry_style(info.not_after, info.not_before, now)
            valid = f"until [{style}]{info.not_after:%Y-%m-%d}[/] ({console.relative(info.not_after, now)})"
        sans = ", ".join(str(s) for s in info.sans) or ("none" if not info.is_ca else "")
        kind = " (CA)" if info.is_ca else ""
        table.add_row(str(index), escape(info.subject) + kind, escape(info.issuer), valid, escape(sans))
    return table
