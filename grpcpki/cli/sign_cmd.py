"""``grpcpki sign CSR_FILE``: certify a key that never leaves its owner's machine."""

from __future__ import annotations

from pathlib import Path

import click

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.engine.profiles import DEFAULT_LEAF_DAYS, Role


@click.command("sign")
@click.argument("csr_file", metavar="CSR_FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice([r.value for r in Role]), required=True,
              help="Profile: server (EKU serverAuth) or client (EKU clientAuth).")
@click.option("--name", default=None, help="Inventory name [default: the CSR's Common Name].")
@click.option("--dns", multiple=True, metavar="NAME", help="DNS SAN, in addition to the CSR's. Repeatable.")
@click.option("--ip", multiple=True, metavar="ADDR", help="IP SAN, in addition to the CSR's. Repeatable.")
@click.option("--uri", multiple=True, metavar="URI", help="URI SAN, in addition to the CSR's. Repeatable.")
@click.option("--spiffe-id", multiple=True, metavar="ID", help="SPIFFE ID, in addition to the CSR's. Repeatable.")
@click.option("--no-name-san", is_flag=True, help="server: do not add NAME itself as a SAN.")
@click.option("--also-client", is_flag=True, help="server: add clientAuth too.")
@click.option("--also-server", is_flag=True, help="client: add serverAuth too.")
@click.option("--days", type=click.IntRange(1, 3650), default=DEFAULT_LEAF_DAYS, show_default=True,
              help="Validity in days (never past the CA's own expiry).")
@click.option("--replace", is_flag=True,
              help="If NAME exists, supersede it (its names are kept, as with `issue --replace`): "
              "how a CSR-signed certificate is renewed.")
@click.option("--remove-san", multiple=True, metavar="SAN", help="With --replace: take this name off. Repeatable.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the chain (leaf + intermediates) to FILE, to hand back to the requester.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pki_options
@pass_app
def sign(
    app: App, csr_file: Path, kind: str, name: str | None, dns: tuple[str, ...], ip: tuple[str, ...],
    uri: tuple[str, ...], spiffe_id: tuple[str, ...], no_name_san: bool, also_client: bool, also_server: bool,
    days: int, replace: bool, remove_san: tuple[str, ...], out_path: Path | None, as_json: bool,
) -> None:
    """Sign a certificate signing request as a server or client certificate.

    The private key stays with whoever made the CSR: grpcpki checks the CSR's signature (proof
    that its maker holds the key), its key type, and its names, with the same rules as `issue`
    and the CA's name constraints. Only the names come from the CSR; the profile decides every
    extension (a CSR asking for CA:TRUE gets a plain leaf). The certificate enters the inventory
    like any other, without a key.pem; to renew it, sign a new CSR with --replace.

    \b
    Examples:
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api.key \\
          -subj /CN=api.example.com -addext subjectAltName=DNS:api.example.com -out api.csr
      grpcpki sign api.csr --kind server --out api.crt
      grpcpki sign web.csr --kind client --name web --spiffe-id spiffe://example.org/web
      grpcpki sign api-2.csr --kind server --name api.example.com --replace   # renewal
    """
    from grpcpki.engine.csr import csr_name, read_csr, sign_csr
    from grpcpki.engine.errors import InvalidNameError
    from grpcpki.engine.names import San, parse_san, validate_dns_name, validate_ip, validate_spiffe_id, validate_uri
    from grpcpki.engine.reissue import plan_issue
    from grpcpki.engine.storage import PUBLIC_FILE_MODE, atomic_write, read_file

    role = Role(kind)
    wrong_kind = [flag for flag, given, only in (("--no-name-san", no_name_san, Role.SERVER),
                                                 ("--also-client", also_client, Role.SERVER),
                                                 ("--also-server", also_server, Role.CLIENT)) if given and role != only]
    if wrong_kind:
        raise click.UsageError(f"{wrong_kind[0]} applies to --kind {'client' if role is Role.SERVER else 'server'} only")
    if remove_san and not replace:
        raise click.UsageError("--remove-san takes names off an existing certificate: add --replace")
    try:
        removals = [parse_san(v) for v in remove_san]
    except InvalidNameError as exc:
        raise click.BadParameter(f"{exc.message} ({exc.hint})", param_hint="--remove-san") from None
    extra: list[San] = [San("dns", validate_dns_name(v)) for v in dns]
    extra += [San("ip", validate_ip(v)) for v in ip]
    extra += [San("uri", validate_uri(v)) for v in uri]
    extra += [San("uri", validate_spiffe_id(v)) for v in spiffe_id]
    csr = read_csr(read_file(csr_file, "CSR"), source=str(csr_file))
    cert_name = csr_name(csr, name)
    sans = [*csr.sans, *extra]
    # As for `issue`: a server NAME that is a hostname is a SAN; a client NAME only when the
    # request names no identity of its own (servers authorize clients by SAN).
    name_as_san = not no_name_san if role is Role.SERVER else not sans
    pki = app.pki()
    plan = plan_issue(pki, role, cert_name, sans=sans, name_as_san=name_as_san, replace=replace,
                      remove_sans=removals, also_client=also_client, also_server=also_server)
    pki.signing_ca()  # unlock before the spinner, so a prompt never shares its line
    with console.err().status(f"Signing {role} certificate {cert_name!r}..."):
        record = sign_csr(pki, plan, csr, days=days)
    if out_path is not None:
        assert record.chain_path is not None
        atomic_write(out_path, read_file(record.chain_path, "certificate chain"), PUBLIC_FILE_MODE)
    if as_json:
        document = record.to_dict() | {"csr": csr.to_dict(), "trust_bundle": str(pki.trust_bundle_path),
                                       "out": str(out_path) if out_path else None}
        if plan.change is not None:
            document["san_change"] = plan.change.to_dict()
        console.print_json(document)
        return
    console.success(
        f"signed {role} certificate {cert_name!r} for {', '.join(record.sans)} ({csr.key_type} key from "
        f"{csr_file}); expires {record.not_after:%Y-%m-%d} ({console.relative(record.not_after)})"
    )
    if plan.change is not None and (plan.change.added or plan.change.removed):
        console.info(f"  names before:      {', '.join(plan.change.before)}")
        console.info(f"  names after:       {', '.join(plan.change.after)}")
    console.info(f"  certificate chain: {record.chain_path}" + (f" (and {out_path})" if out_path else ""))
    console.info(f"  trust bundle:      {pki.trust_bundle_path}")
    console.info("  private key:       with the requester (to renew: sign a new CSR with --replace)")
