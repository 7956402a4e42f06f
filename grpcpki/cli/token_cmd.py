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
    """Create and list one-time enrollment tokens for `grpcpki ca-server`.

    \b
    Examples:
      grpcpki token create web --kind client --spiffe-id spiffe://example.org/web --ttl 15m
      grpcpki token list
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
    """List enrollment tokens: unused, used (by which serial, through which replica) and expired.

    \b
    Examples:
      grpcpki token list
      grpcpki token list --json
    """
    from datetime import UTC, datetime

    from grpcpki.engine.enrollment import store_for

    rows = store_for(app.pki()).tokens()
    if as_json:
        console.print_json({"tokens": [r.to_dict() for r in rows]})
        return
    if not rows:
        console.info("no enrollment tokens (create one with `grpcpki token create NAME --kind client`)")
        return
    now = datetime.now(UTC)
    for r in rows:
        if r.used_at is not None:
            state = f"used {r.used_at:%Y-%m-%d %H:%M}Z -> serial {(r.used_serial or '')[:16]} via {r.used_via or '?'}"
        elif r.expires_at <= now:
            state = f"expired {r.expires_at:%Y-%m-%d %H:%M}Z"
        else:
            state = f"unused, expires {r.expires_at:%Y-%m-%d %H:%M}Z"
        sys.stdout.write(f"{r.token_id}  {r.kind:6}  {r.name}  {state}\n")
