"""``grpcpki list`` and ``grpcpki inspect``: what the PKI holds, and what a certificate says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from rich.markup import escape
from rich.table import Table

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import DURATION


@click.command("list")
@click.option("--expiring", type=DURATION, default=None, metavar="DURATION",
              help="Only certificates that expire within DURATION (30d, 12h, 2w).")
@click.option("--kind", type=click.Choice(["server", "client"]), default=None, help="Only this kind.")
@click.option("--all", "include_inactive", is_flag=True, help="Include superseded and revoked certificates.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pki_options
@pass_app
def list_cmd(app: App, expiring: timedelta | None, kind: str | None, include_inactive: bool, as_json: bool) -> None:
    """List the certificates issued by this PKI.

    \b
    Examples:
      grpcpki list
      grpcpki list --expiring 30d --kind server
      grpcpki list --json | jq -r '.[].name'
    """
    pki = app.pki()
    records = pki.records(kind=kind, expiring_within=expiring, include_inactive=include_inactive)
    if as_json:
        console.print_json([r.to_dict() for r in records])
        return
    if not records:
        what = f"{kind} certificates" if kind else "certificates"
        suffix = f" expiring within {expiring.days} days" if expiring else ""
        console.info(f"No {what}{suffix} in {pki.path}.")
        return
    now = datetime.now(UTC)
    table = Table(title=f"Certificates in {pki.path}", title_justify="left")
    for column in ("name", "kind", "SANs", "expires", "status", "serial"):
        table.add_column(column, overflow="fold")
    for record in records:
        style = console.expiry_style(record.not_after, record.not_before, now)
        table.add_row(
            escape(record.name),
            record.kind,
            escape("\n".join(record.sans)),
            f"[{style}]{console.relative(record.not_after, now)}[/] ({record.not_after:%Y-%m-%d})",
            record.status,
            record.serial[:16] + "…",
        )
    console.out().print(table)


@click.command("inspect")
@click.argument("target", metavar="NAME|FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pki_options
@pass_app
def inspect_cmd(app: App, target: str, as_json: bool) -> None:
    """Show what a certificate (or key) says, and whether it verifies against this PKI.

    TARGET is a name from `grpcpki list` or a PEM file. For a private key only public facts
    are shown.

    \b
    Examples:
      grpcpki inspect localhost
      grpcpki inspect ./pki/certs/web/chain.pem --json
      grpcpki inspect server.key
    """
    from pathlib import Path

    from grpcpki.engine.pki import Pki, inspect_file

    if Pki.exists(app.pki_path):
        inspection = app.pki().inspect(target)
    elif Path(target).is_file():
        # A file can be read without a PKI; there is just nothing to verify it against.
        inspection = inspect_file(Path(target))
    else:
        inspection = app.pki().inspect(target)  # raises the "no CA" error with its hint
    if as_json:
        data: dict[str, object] = {"source": inspection.source, "kind": inspection.kind}
        if inspection.info:
            data |= inspection.info.to_dict() | {"chain_length": inspection.chain_length}
            data["validity"] = inspection.info.validity_state()
        if inspection.key:
            data |= {"key_type": inspection.key.key_type, "encrypted": inspection.key.encrypted,
                     "public_key_sha256": inspection.key.public_key_sha256}
        if inspection.verification:
            data["verifies"] = inspection.verification.ok
            data["verification"] = inspection.verification.detail
        if inspection.record:
            data["inventory"] = {"name": inspection.record.name, "status": inspection.record.status}
        console.print_json(data)
        return
    _render(inspection)


def _render(inspection: object) -> None:
    from grpcpki.engine.pki import Inspection

    assert isinstance(inspection, Inspection)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("file", escape(inspection.source))
    if inspection.key is not None:
        table.add_row("kind", "private key (public facts only)")
        table.add_row("key type", inspection.key.key_type)
        table.add_row("encrypted", "yes" if inspection.key.encrypted else "no")
        if inspection.key.public_key_sha256:
            table.add_row("public key SHA-256", inspection.key.public_key_sha256)
        console.out().print(table)
        return
    info = inspection.info
    assert info is not None
    now = datetime.now(UTC)
    style = console.expiry_style(info.not_after, info.not_before, now)
    table.add_row("subject", escape(info.subject))
    table.add_row("issuer", escape(info.issuer))
    table.add_row("SANs", escape(", ".join(str(s) for s in info.sans)) or "[red]none[/] (Go and grpc IP targets reject this)")
    kind = "CA" + (f" (pathlen {info.path_len})" if info.path_len is not None else "") if info.is_ca else "leaf"
    table.add_row("type", kind)
    table.add_row("key usage", ", ".join(info.key_usage) or "-")
    table.add_row("extended key usage", ", ".join(info.extended_key_usage) or "-")
    table.add_row("key", info.key_type)
    table.add_row("not before", f"{info.not_before:%Y-%m-%d %H:%M:%S} UTC ({console.relative(info.not_before, now)})")
    table.add_row("not after", f"[{style}]{info.not_after:%Y-%m-%d %H:%M:%S} UTC ({console.relative(info.not_after, now)})[/]")
    table.add_row("serial", info.serial_hex)
    table.add_row("SHA-256", info.fingerprint_sha256)
    if inspection.chain_length > 1:
        table.add_row("chain", f"{inspection.chain_length} certificates (leaf + intermediates)")
    if inspection.record is not None:
        table.add_row("inventory", f"{escape(inspection.record.name)} ({inspection.record.status})")
    if inspection.verification is not None:
        mark = "[green]✓[/]" if inspection.verification.ok else "[red]✗[/]"
        table.add_row("verifies", f"{mark} {escape(inspection.verification.detail)}")
    console.out().print(table)
