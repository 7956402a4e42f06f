"""``grpcpki token``: one-time enrollment tokens for the CA service (``grpcpki ca-server``)."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import DURATION


@click.group("token")
def token_group() -> None:
    """Create, list and revoke one-time enrollment tokens for `grpcpki ca-server`.

    \b
    Examples:
      grpcpki token create web --kind client --spiffe-id spiffe://example.org/web --ttl 15m
      grpcpki token list
      grpcpki token revoke 3f2a9c01d4e5
    """


@token_group.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(["server", "client"]), required=True,
              help="The certificate the token enrolls: server (serverAuth) or client (clientAuth).")
@click.option("--dns", multiple=True, metavar="NAME", help="DNS SAN the certificate gets. Repeatable.")
@click.option("--ip", multiple=True, metavar="ADDR", help="IP SAN the certificate gets. Repeatable.")
@click.option("--uri", multiple=True, metavar="URI", help="URI SAN the certificate gets. Repeatable.")
@click.option("--spiffe-id", multiple=True, metavar="ID", help="SPIFFE ID the certificate gets. Repeatable.")
@click.option("--ttl", type=DURATION, default="1h", show_default=True, metavar="DURATION",
              help="How long the token can be used (once).")
@click.option("--days", type=click.IntRange(1, 3650), default=None,
              help="Certificate lifetime in days [default: the server's --max-days, which also caps it].")
@click.option("--replace", is_flag=True, help="Allow superseding an active certificate of NAME (a re-enrollment).")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its details as JSON (stdout).")
@pki_options
@pass_app
def create(
    app: App, name: str, kind: str, dns: tuple[str, ...], ip: tuple[str, ...], uri: tuple[str, ...],
    spiffe_id: tuple[str, ...], ttl: timedelta, days: int | None, replace: bool, as_json: bool,
) -> None:
    """Create a one-time token that enrolls NAME as a KIND certificate with these names.

    The token is printed once, on stdout; the PKI stores only its SHA-256. It works once,
    until --ttl passes, and only for NAME, --kind and the SANs given here (a CSR asking for
    other names is refused). Hand it to the workload over a secret channel (a Kubernetes
    Secret, a sealed file): anyone holding it can enroll NAME once.

    \b
    Examples:
      grpcpki token create web --kind client --spiffe-id spiffe://example.org/web
      grpcpki token create api.internal --kind server --dns api.internal --ip 10.0.0.7 --ttl 15m
      TOKEN=$(grpcpki token create web --kind client) && grpcpki enroll --token "$TOKEN" ...
    """
    from grpcpki.engine.enrollment import create_token, token_sans
    from grpcpki.engine.errors import InvalidNameError

    if ttl < timedelta(seconds=1):
        raise click.BadParameter("must be at least 1s", param_hint="--ttl")
    try:
        sans = token_sans(dns=dns, ip=ip, uri=uri, spiffe_id=spiffe_id)
    except InvalidNameError as exc:
        raise click.BadParameter(f"{exc.message} ({exc.hint})" if exc.hint else exc.message,
                                 param_hint="--dns/--ip/--uri/--spiffe-id") from None
    created = create_token(app.pki(), name, kind, sans=sans, ttl=ttl, days=days, replace=replace)
    row = created.row
    if as_json:
        console.print_json({"token": created.secret} | row.to_dict())
        return
    # The secret alone on stdout, so `$(grpcpki token create ...)` captures exactly it.
    sys.stdout.write(created.secret + "\n")
    sys.stdout.flush()
    names = ", ".join(row.sans) if row.sans else "NAME only"
    console.success(
        f"token {row.token_id} enrolls {kind} {name!r} ({names}) once, until {row.expires_at:%Y-%m-%d %H:%M}Z; "
        "it is shown only now"
    )


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as JSON (stdout).")
@pki_options
@pass_app
def list_tokens(app: App, as_json: bool) -> None:
    """List enrollment tokens and their state: unused, used (by which serial, through which
    replica), expired or revoked.

    \b
    Examples:
      grpcpki token list
      grpcpki token list --json | jq -r '.tokens[] | select(.state == "unused") | .token_id'
    """
    from datetime import UTC, datetime

    from grpcpki.engine.enrollment import store_for

    rows = store_for(app.pki()).tokens()
    now = datetime.now(UTC)
    if as_json:
        console.print_json({"tokens": [r.to_dict(now) for r in rows]})
        return
    if not rows:
        console.info("no enrollment tokens (create one with `grpcpki token create NAME --kind client`)")
        return
    for r in rows:
        state = r.state(now)
        if state == "used":
            detail = f"used {r.used_at:%Y-%m-%d %H:%M}Z -> serial {(r.used_serial or '')[:16]} via {r.used_via or '?'}"
        elif state == "revoked":
            detail = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}Z by {r.revoked_by or '?'}"
        elif state == "expired":
            detail = f"expired {r.expires_at:%Y-%m-%d %H:%M}Z"
        else:
            detail = f"unused, expires {r.expires_at:%Y-%m-%d %H:%M}Z"
        # Plain writes: names come from operators' input and are never read as rich markup.
        sys.stdout.write(f"{r.token_id}  {r.kind:6}  {r.name}  {detail}\n")


@token_group.command("revoke")
@click.argument("token_id", metavar="TOKEN_ID")
@click.option("--json", "as_json", is_flag=True, help="Print the token's row after the change as JSON (stdout).")
@pki_options
@pass_app
def revoke(app: App, token_id: str, as_json: bool) -> None:
    """Withdraw an unused enrollment token: Enroll then refuses it, on every replica at once.

    TOKEN_ID is the 12-hex-digit id `token list` shows (or the token itself, read from
    GRPCPKI_ENROLL_TOKEN when TOKEN_ID is `-`, so the secret stays out of argv). A token
    already used cannot be revoked: revoke the certificate it enrolled (`grpcpki revoke SERIAL`).
    Revoking a revoked token changes nothing.

    \b
    Examples:
      grpcpki token revoke 3f2a9c01d4e5
      GRPCPKI_ENROLL_TOKEN=grpcpki-enroll-... grpcpki token revoke -
    """
    import os

    from grpcpki.engine.enrollment import revoke_token

    if token_id == "-":
        token_id = os.environ.get("GRPCPKI_ENROLL_TOKEN", "")
        if not token_id:
            raise click.BadParameter("'-' reads the token from GRPCPKI_ENROLL_TOKEN, which is not set",
                                     param_hint="TOKEN_ID")
    elif token_id.startswith("grpcpki-enroll-"):
        raise click.BadParameter("that is the token itself: give its id from `grpcpki token list`, or '-' with "
                                 "GRPCPKI_ENROLL_TOKEN set (a secret in argv is visible to every user)",
                                 param_hint="TOKEN_ID")
    row, changed = revoke_token(app.pki(), token_id)
    if as_json:
        console.print_json({"action": "revoked" if changed else "already-revoked"} | row.to_dict())
        return
    assert row.revoked_at is not None
    if changed:
        console.success(f"token {row.token_id} ({row.kind} {row.name!r}) revoked: Enroll refuses it on every replica")
    else:
        console.info(f"token {row.token_id} ({row.kind} {row.name!r}) was already revoked on "
                     f"{row.revoked_at:%Y-%m-%d %H:%M}Z by {row.revoked_by or '?'}")
