"""``grpcpki init-ca``: create the certificate authority."""

from __future__ import annotations

import click

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import DaysType
from grpcpki.engine.keys import KeyType
from grpcpki.engine.names import NameConstraints
from grpcpki.engine.profiles import DEFAULT_CA_DAYS

KEY_TYPES = [k.value for k in KeyType]


@click.command("init-ca")
@click.option("--name", default="grpcpki CA", show_default=True, help="Common Name of the CA.")
@click.option("--org", default=None, help="Organization (O=) of the CA subject.")
@click.option(
    "--key-type", type=click.Choice(KEY_TYPES), default=KeyType.ECDSA_P256.value, show_default=True,
    help="Key algorithm of the CA (and its intermediate).",
)
@click.option("--days", type=DaysType(1, 36500), default=DEFAULT_CA_DAYS, show_default=True, help="Validity of the root CA.")
@click.option("--path-len", type=click.IntRange(0, 10), default=None, help="basicConstraints pathLenConstraint.")
@click.option("--permit-dns", multiple=True, metavar="DOMAIN", help="Only sign DNS names under DOMAIN (e.g. .svc.cluster.local). Repeatable.")
@click.option("--permit-uri", multiple=True, metavar="URI", help="Only sign URIs/SPIFFE IDs with this host (e.g. spiffe://example.org). Repeatable.")
@click.option("--permit-ip", multiple=True, metavar="CIDR", help="Only sign IP addresses in CIDR (e.g. 10.0.0.0/8). Repeatable.")
@click.option("--intermediate", is_flag=True, help="Create an offline root plus an online intermediate that signs leaves.")
@click.option("--encrypt", is_flag=True, help="Encrypt the CA key(s) at rest with a passphrase.")
@click.option(
    "--key-uri", metavar="PKCS11-URI", default=None,
    help="Generate the CA key on a PKCS#11 token (HSM, SoftHSM2), never extractable: "
    "'pkcs11:token=LABEL;object=LABEL' (RFC 7512). The module comes from $GRPCPKI_PKCS11_MODULE, "
    "the PIN from --pin-file or the environment. With --intermediate its key goes under OBJECT-intermediate.",
)
@click.option("--force", is_flag=True, help="Replace an existing CA (the old directory is moved aside, not deleted).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pki_options
@pass_app
def init_ca(
    app: App,
    name: str,
    org: str | None,
    key_type: str,
    days: int,
    path_len: int | None,
    permit_dns: tuple[str, ...],
    permit_uri: tuple[str, ...],
    permit_ip: tuple[str, ...],
    intermediate: bool,
    encrypt: bool,
    key_uri: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Create a certificate authority in the PKI directory.

    The passphrase for --encrypt comes from --passphrase-file, $GRPCPKI_PASSPHRASE or a
    prompt (never a command-line value: other users can read argv). With --key-uri the CA
    key is generated on a PKCS#11 token and only its URI is written (ca/g1/root.key.uri);
    every certificate and CRL is then signed on the token (docs/team.md).

    \b
    Examples:
      grpcpki init-ca --name "Example CA"
      grpcpki init-ca --intermediate --encrypt --passphrase-file ~/.ca-pass
      grpcpki init-ca --permit-dns .svc.cluster.local --permit-uri spiffe://example.org
      GRPCPKI_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so \\
        grpcpki init-ca --key-uri 'pkcs11:token=grpcpki;object=ca-root' --pin-file ~/.token-pin
    """
    from grpcpki.engine.pki import Pki

    if key_uri is not None and encrypt:
        raise click.UsageError(
            "--encrypt protects key files; with --key-uri the CA key never leaves the token (drop --encrypt)"
        )
    if key_uri is not None and key_type == KeyType.ED25519.value:
        raise click.BadParameter("a CA key on a PKCS#11 token is ECDSA or RSA", param_hint="'--key-type'")
    from grpcpki.engine.errors import InvalidNameError
    from grpcpki.engine.names import validate_ca_name, validate_common_name

    # Usage errors naming the flag, before any passphrase prompt.
    try:
        validate_ca_name(name)
    except InvalidNameError as exc:
        raise click.BadParameter(f"{exc.message} ({exc.hint})", param_hint="--name") from None
    if org is not None:
        try:
            validate_common_name(org, "organization")
        except InvalidNameError as exc:
            raise click.BadParameter(f"{exc.message} ({exc.hint})", param_hint="--org") from None
    constraints = NameConstraints.parse(dns=permit_dns, uri=permit_uri, ip=permit_ip)
    passphrase = app.passphrase(confirm=True, purpose="New CA key passphrase") if encrypt else None
    token_login = app.token_login()
    if key_uri is not None:
        from grpcpki.engine.hsm import Pkcs11Uri, open_session

        # Log in now: a wrong module, token or PIN fails before any work, and a PIN prompt
        # does not fight with the spinner below.
        open_session(Pkcs11Uri.parse(key_uri), token_login)
    with console.err().status("Creating the CA..."):
        pki = Pki.init(
            app.pki_path, name=name, org=org, key_type=KeyType(key_type), days=days, path_len=path_len,
            constraints=None if constraints.empty else constraints, intermediate=intermediate,
            passphrase=passphrase, force=force, lock=app.lock_options(), key_uri=key_uri, token_login=token_login,
        )
    records = pki.ca_records()
    if as_json:
        console.print_json({
            "pki": str(pki.path.resolve()),
            "trust_bundle": str(pki.trust_bundle_path.resolve()),
            "encrypted": encrypt,
            "key_uri": key_uri,
            "cas": [r.to_dict() for r in records],
        })
        return
    for record in records:
        console.success(
            f"created {record.kind} CA {record.subject!r} ({record.key_type}), "
            f"expires {record.not_after:%Y-%m-%d}"
        )
        console.info(f"  certificate: {record.cert_path}")
        if record.key_path is not None and record.key_path.name.endswith(".key.uri"):
            uri = record.key_path.read_text().strip()
            console.info(f"  key:         on the PKCS#11 token, not extractable: {uri} (in {record.key_path})")
        else:
            console.info(f"  key:         {record.key_path}" + (" (encrypted)" if encrypt else ""))
    console.info(f"  trust bundle for servers and clients: {pki.trust_bundle_path}")
    console.info("Next: grpcpki issue server localhost")
