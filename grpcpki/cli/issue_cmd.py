"""``grpcpki issue server|client NAME``: issue leaf certificates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import DaysType
from grpcpki.engine.keys import KeyType
from grpcpki.engine.profiles import DEFAULT_LEAF_DAYS, Role


@click.group("issue")
def issue() -> None:
    """Issue a server or client certificate signed by the PKI's CA.

    \b
    Examples:
      grpcpki issue server localhost
      grpcpki issue server api --dns api.prod.svc.cluster.local --ip 10.0.0.7
      grpcpki issue client web --spiffe-id spiffe://example.org/ns/prod/sa/web
    """


def _leaf_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("--dns", multiple=True, metavar="NAME", help="DNS SAN (wildcards: *.example.com). Repeatable."),
        click.option("--ip", multiple=True, metavar="ADDR", help="IP SAN, IPv4 or IPv6. Repeatable."),
        click.option("--uri", multiple=True, metavar="URI", help="URI SAN. Repeatable."),
        click.option(
            "--spiffe-id", multiple=True, metavar="ID",
            help="SPIFFE ID (a URI SAN checked against the SPIFFE spec). Repeatable.",
        ),
        click.option("--days", type=DaysType(1, 3650), default=DEFAULT_LEAF_DAYS, show_default=True,
                     help="Validity in days (never past the CA's own expiry)."),
        click.option("--key-type", type=click.Choice([k.value for k in KeyType]),
                     default=KeyType.ECDSA_P256.value, show_default=True, help="Key algorithm."),
        click.option("--replace", is_flag=True,
                     help="If NAME exists, reissue it: the names it has plus those given now "
                     "(the old one is archived). `grpcpki renew` keeps the same names."),
        click.option("--remove-san", multiple=True, metavar="SAN",
                     help="With --replace: take this name off, as `inspect` shows it (DNS:api, IP:10.0.0.7, "
                     "URI:spiffe://...). Repeatable."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        pki_options,
        pass_app,
    ]
    for option in reversed(options):
        func = option(func)
    return func


@issue.command("server")
@click.argument("name")
@click.option("--no-name-san", is_flag=True, help="Do not add NAME itself as a SAN.")
@click.option("--also-client", is_flag=True, help="Add clientAuth too, for a peer that also dials out with this cert.")
@_leaf_options
def issue_server(app: App, name: str, no_name_san: bool, also_client: bool, **options: Any) -> None:
    """Issue a server certificate (EKU serverAuth) for NAME.

    If NAME is a hostname or IP it becomes a SAN. `localhost` also gets 127.0.0.1 and
    ::1, so clients can dial localhost:PORT, 127.0.0.1:PORT or [::1]:PORT: gRPC checks an
    IP target only against IP SANs, and a DNS target only against DNS SANs.

    \b
    Examples:
      grpcpki issue server localhost
      grpcpki issue server api.example.com --dns api --ip 10.0.0.7
      grpcpki issue server api --spiffe-id spiffe://example.org/api --also-client
      grpcpki issue server localhost --ip 10.0.0.7 --replace   # add a SAN to an existing one
      grpcpki issue server api --replace --remove-san IP:10.0.0.7
    """
    _issue(app, Role.SERVER, name, name_as_san=not no_name_san, also_client=also_client, also_server=False, **options)


@issue.command("client")
@click.argument("name")
@click.option("--also-server", is_flag=True, help="Add serverAuth too, for a peer that also serves with this cert.")
@_leaf_options
def issue_client(app: App, name: str, also_server: bool, **options: Any) -> None:
    """Issue a client certificate (EKU clientAuth) for NAME.

    Servers authorize clients by SAN: give a SPIFFE ID or URI for the identity `serve
    --allow` will check. A NAME that is a valid hostname becomes a DNS SAN.

    \b
    Examples:
      grpcpki issue client web --spiffe-id spiffe://example.org/ns/default/sa/web
      grpcpki issue client batch-job --dns batch.internal --days 30
    """
    # A client NAME becomes a DNS SAN only when no other identity is given: the SAN is what
    # servers authorize on, and an unasked-for DNS:web would widen a glob --allow.
    has_sans = any(options[flag] for flag in ("dns", "ip", "uri", "spiffe_id"))
    _issue(app, Role.CLIENT, name, name_as_san=not has_sans, also_client=False, also_server=also_server, **options)


def _issue(
    app: App, role: Role, name: str, *, name_as_san: bool, also_client: bool, also_server: bool,
    dns: tuple[str, ...], ip: tuple[str, ...], uri: tuple[str, ...], spiffe_id: tuple[str, ...],
    days: int, key_type: str, replace: bool, remove_san: tuple[str, ...], as_json: bool,
) -> None:
    from grpcpki.engine.errors import InvalidNameError
    from grpcpki.engine.names import San, parse_san, validate_dns_name, validate_ip, validate_spiffe_id, validate_uri

    # Validate each flag's values as what the flag says they are, so `--ip foo` is not silently a DNS name.
    sans: list[San] = [San("dns", validate_dns_name(v)) for v in dns]
    sans += [San("ip", validate_ip(v)) for v in ip]
    sans += [San("uri", validate_uri(v)) for v in uri]
    sans += [San("uri", validate_spiffe_id(v)) for v in spiffe_id]
    from grpcpki.engine.reissue import issue_planned, plan_issue

    if remove_san and not replace:
        raise click.UsageError("--remove-san takes names off an existing certificate: add --replace")
    try:
        removals = [parse_san(v) for v in remove_san]
    except InvalidNameError as exc:
        raise click.BadParameter(f"{exc.message} ({exc.hint})", param_hint="--remove-san") from None
    pki = app.pki()
    # Bad input is reported before the passphrase is asked for; then unlock the CA before the
    # spinner starts, so a prompt never shares its line.
    plan = plan_issue(pki, role, name, sans=sans, name_as_san=name_as_san, replace=replace, remove_sans=removals,
                      also_client=also_client, also_server=also_server)
    pki.signing_ca()
    with console.err().status(f"Issuing {role} certificate {name!r}..."):
        record = issue_planned(pki, plan, days=days, key_type=KeyType(key_type))
    if as_json:
        document = record.to_dict() | {"trust_bundle": str(pki.trust_bundle_path)}
        if plan.change is not None:
            document["replaced_serial"] = plan.replaces.serial if plan.replaces else None
            document["san_change"] = plan.change.to_dict()
        console.print_json(document)
        return
    verb = "reissued" if plan.change is not None else "issued"
    console.success(
        f"{verb} {role} certificate {name!r} for {', '.join(record.sans)}; expires {record.not_after:%Y-%m-%d} "
        f"({console.relative(record.not_after)})"
    )
    if plan.change is not None:
        change = plan.change
        console.info(f"  names before:      {', '.join(change.before)}")
        console.info(f"  names after:       {', '.join(change.after)}")
        if change.added or change.removed:
            console.info(f"  added: {', '.join(change.added) or '-'}; removed: {', '.join(change.removed) or '-'}")
        else:
            console.info("  names unchanged (new key and validity)")
    console.info(f"  certificate chain: {record.chain_path}")
    console.info(f"  private key:       {record.key_path}")
    console.info(f"  trust bundle:      {pki.trust_bundle_path}")
