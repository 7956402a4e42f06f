"""``grpcpki list`` and ``grpcpki inspect``: what the PKI holds, and what a certificate says.

``list`` streams from the inventory (``grpcpki.engine.listing``: the embedded SQLite file through
the standard library's sqlite3, else ``Inventory.iter_listing``) and writes as it reads, so
100,000 certificates list in constant memory; only a terminal gets a rich table, of the rows
that fit on the screen. rich, cryptography and SQLAlchemy are imported only on the paths that
need them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from grpcpki.cli.completion_cmd import complete_names
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import DURATION, CheckedPath

if TYPE_CHECKING:
    from grpcpki.engine.listing import Listed, ListingSource

_KINDS = ("server", "client", "root", "intermediate", "cross")
# Title, header and borders of the table, the footer line and the shell prompt.
_TABLE_CHROME = 7


@click.command("list")
@click.option("--expiring", type=DURATION, default=None, metavar="DURATION",
              help="Only certificates that expire within DURATION (30d, 12h, 2w), expired ones included.")
@click.option("--expired", is_flag=True, help="Only certificates already past their expiry.")
@click.option("--before", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]),
              default=None, metavar="DATE", help="Only certificates that expire before DATE (UTC, 2027-01-31).")
@click.option("--kind", type=click.Choice(_KINDS), default=None, help="Only this kind (CA certificates included by default).")
@click.option("--all", "include_inactive", is_flag=True, help="Include superseded, revoked and archived certificates.")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="Show at most N rows (0: all) [default: what fits on a terminal, all when piped].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array for scripts (streamed).")
@pki_options
@pass_app
def list_cmd(
    app: App, expiring: timedelta | None, expired: bool, before: datetime | None, kind: str | None,
    include_inactive: bool, limit: int | None, as_json: bool,
) -> None:
    """List the certificates issued by this PKI.

    Sorted by expiry, soonest first; the CA certificates (kind root, intermediate) are listed
    with the leaves. An active certificate past its expiry shows as "expired". Serials are
    printed as `openssl x509 -noout -serial` prints them.

    On a terminal: a table of the rows that fit, and how many there are in all. Piped: plain
    rows, one per certificate, tab-separated, never wrapped: name, kind, status, expiry (UTC),
    days left, serial, SANs (comma-separated).

    \b
    Examples:
      grpcpki list
      grpcpki list --expiring 30d --kind server
      grpcpki list --expired
      grpcpki list --before 2027-01-31 | cut -f1,4
      grpcpki list --json | jq -r '.[] | "\\(.name) \\(.days_left)"'
    """
    from grpcpki.engine.listing import open_listing

    given = [flag for flag, value in (("--expiring", expiring), ("--expired", expired), ("--before", before)) if value]
    if len(given) > 1:
        raise click.UsageError(f"give one of --expiring, --expired and --before, not {' and '.join(given)}")
    now = datetime.now(UTC)
    expiring_before = None
    if expiring is not None:
        expiring_before = now + expiring
    elif expired:
        expiring_before = now
    elif before is not None:
        expiring_before = before.replace(tzinfo=UTC)
    inventory = open_listing(app.pki_path)
    filters: dict[str, object] = {
        "kinds": (kind,) if kind else None,
        "statuses": None if include_inactive else ("active",),
        "expiring_before": expiring_before,
    }
    try:
        if as_json:
            _write_json(inventory.iter_listing(**filters, limit=limit or None), now)  # type: ignore[arg-type]
        elif sys.stdout.isatty():
            _write_table(app, inventory, filters, limit, now, kind=kind, expiring=expiring, expired=expired,
                         before=before)
        else:
            _write_rows(inventory.iter_listing(**filters, limit=limit or None), now)  # type: ignore[arg-type]
    except BrokenPipeError:
        # `grpcpki list | head`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush does not complain about the closed pipe.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        inventory.close()


def _write_rows(records: Iterator[Listed], now: datetime) -> None:
    write = sys.stdout.write
    for record in records:
        write(
            f"{record.name}\t{record.kind}\t{record.state(now)}\t{record.not_after:%Y-%m-%dT%H:%M:%SZ}\t"
            f"{record.days_left(now)}\t{record.openssl_serial}\t{','.join(record.sans)}\n"
        )
    sys.stdout.flush()


def _write_json(records: Iterator[Listed], now: datetime) -> None:
    """One JSON array, as before, written one object per line as the rows arrive."""
    write = sys.stdout.write
    separator = "[\n  "
    for record in records:
        write(separator)
        write(json.dumps(_json_record(record, now)))
        separator = ",\n  "
    write("[]\n" if separator == "[\n  " else "\n]\n")
    sys.stdout.flush()


def _json_record(record: Listed, now: datetime) -> dict[str, object]:
    data = record.to_dict()
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = f"{value:%Y-%m-%dT%H:%M:%SZ}"
    data["serial_openssl"] = record.openssl_serial
    data["state"] = record.state(now)
    data["days_left"] = record.days_left(now)
    return data


def _write_table(
    app: App, inventory: ListingSource, filters: dict[str, object], limit: int | None, now: datetime, *,
    kind: str | None, expiring: timedelta | None, expired: bool, before: datetime | None,
) -> None:
    from rich.markup import escape
    from rich.table import Table

    from grpcpki.cli import console

    total = inventory.count(**filters)  # type: ignore[arg-type]
    if total == 0:
        what = f"{kind} certificates" if kind else "certificates"
        if expiring is not None:
            what += f" expiring within {_duration_words(expiring)}"
        elif expired:
            what = "expired " + what
        elif before is not None:
            what += f" expiring before {before:%Y-%m-%d}"
        console.info(f"No {what} in {app.pki_path}.")
        return
    if limit is None:
        shown = max(5, console.out().size.height - _TABLE_CHROME)
    else:
        shown = limit or total
    table = Table(title=f"Certificates in {escape(str(app.pki_path))}, soonest expiry first", title_justify="left")
    # One line per row, so "the rows that fit" is true: nothing wraps. Every column but the SANs
    # keeps its full width (names and serials are matched by people); on a narrow terminal the
    # SANs are cut short (all of them are in the piped and --json output).
    rows = []
    for record in inventory.iter_listing(**filters, limit=shown):  # type: ignore[arg-type]
        state = record.state(now)
        style = console.expiry_style(record.not_after, record.not_before, now)
        expires = f"{console.relative(record.not_after, now)} ({record.not_after:%Y-%m-%d})"
        rows.append((record.name, record.kind, state, expires, style, record.openssl_serial, ", ".join(record.sans)))
    widths = [max(len(row[i]) for row in rows) for i in (0, 1, 2, 3, 5)]
    for column, width in zip(("name", "kind", "status", "expires", "serial"), widths, strict=True):
        table.add_column(column, no_wrap=True, min_width=max(width, len(column)))
    # What is left of the line (each of the 6 columns costs 3 more: padding and a border).
    room = console.out().width - sum(max(w, len(c)) for w, c in zip(widths, ("name", "kind", "status", "expires", "serial"),
                                                                   strict=True)) - 6 * 3 - 1
    table.add_column("SANs", no_wrap=True, overflow="ellipsis", max_width=max(10, room))
    for name, kind, state, expires, style, serial, sans in rows:
        table.add_row(
            escape(name), kind, f"[bold red]{state}[/]" if state == "expired" else state,
            f"[{style}]{escape(expires)}[/]", serial, escape(sans),
        )
    console.out().print(table)
    if total > shown:
        console.info(
            f"showing {shown:,} of {total:,}, soonest expiry first; `grpcpki list | less -S` or --limit 0 shows all"
        )


def _duration_words(delta: timedelta) -> str:
    if delta % timedelta(days=1) == timedelta(0):
        return f"{delta.days} days"
    return f"{delta.total_seconds() / 3600:g} hours"


@click.command("inspect")
@click.argument(
    "target", metavar="NAME|FILE", type=CheckedPath(path_type=str), shell_complete=complete_names(files=True)
)
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

    from grpcpki.cli import console
    from grpcpki.engine.pki import Pki, inspect_file

    if Pki.exists(app.pki_path):
        inspection = app.pki().inspect(target)
    elif Path(target).exists() and not Path(target).is_dir():
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
    from rich.markup import escape
    from rich.table import Table

    from grpcpki.cli import console
    from grpcpki.engine.pki import Inspection

    assert isinstance(inspection, Inspection)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("file", escape(inspection.source))
    if inspection.key is not None:
        table.add_row("kind", "private key (public facts only)")
        table.add_row("key type", escape(inspection.key.key_type))
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
