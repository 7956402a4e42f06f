"""``grpcpki ca rotate begin|status|finish``: replace the CA without downtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options

if TYPE_CHECKING:
    from grpcpki.engine.rotation import RotationStatus


@click.group("ca")
def ca_group() -> None:
    """Manage the certificate authority (create it with `grpcpki init-ca`).

    \b
    Examples:
      grpcpki ca rotate begin --cross-sign
      grpcpki ca rotate status
      grpcpki ca reencrypt
    """


@ca_group.command("reencrypt")
@click.option("--force", is_flag=True, help="Rewrite every encrypted CA key, not only those with a weak KDF.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON (stdout).")
@pki_options
@pass_app
def reencrypt(app: App, force: bool, as_json: bool) -> None:
    """Re-encrypt the CA keys with grpcpki's current KDF, keeping the passphrase.

    Keys written by older grpcpki versions (or by OpenSSL with its defaults) use a KDF that is
    cheap to guess offline; this rewrites each one atomically (mode 0600) with PBKDF2-HMAC-SHA256
    at 600,000 iterations and AES-256-CBC, still readable by `openssl pkey` (docs/security.md).
    Unencrypted keys are left as they are.

    \b
    Examples:
      grpcpki ca reencrypt
      GRPCPKI_PASSPHRASE=... grpcpki ca reencrypt --force --json
    """
    from grpcpki.engine.protection import reencrypt_ca_keys

    results = reencrypt_ca_keys(app.pki(), force=force)
    if as_json:
        console.print_json([{"path": str(r.path), "before": r.before, "rewritten": r.rewritten} for r in results])
        return
    if not results:
        console.info("no CA key files in this PKI (a CA key on a token is protected by the token)")
    for result in results:
        if result.rewritten:
            console.success(f"re-encrypted {result.path} (was {result.before})")
        else:
            console.info(f"left {result.path} as it is ({result.before})")


@ca_group.group("rotate")
def rotate() -> None:
    """Replace the CA without downtime, in three resumable steps.

    \b
      grpcpki ca rotate begin     new CA generation; ca.crt trusts old + new
      (make every peer reload ca.crt)
      grpcpki renew --all         reissue every certificate from the new CA
      (make every peer reload its certificate)
      grpcpki ca rotate finish    drop the old CA from ca.crt
      (or, before finish: grpcpki ca rotate abort   back to the old CA alone)

    Each step can be rerun after a crash or an error; it continues where it stopped.
    See docs/rotation.md for how long to keep the overlap.

    \b
    Example:
      grpcpki ca rotate begin && grpcpki renew --all && grpcpki ca rotate status
    """


@rotate.command("begin")
@click.option("--intermediate-only", is_flag=True,
              help="Rotate only the issuing intermediate under the same root (ca.crt does not change).")
@click.option("--cross-sign", is_flag=True,
              help="Also certify the new root with the old one and add it to new chains, so peers "
              "that still trust only the old root accept new certificates.")
@click.option(
    "--key-uri", metavar="PKCS11-URI", default=None,
    help="Generate the new CA key on a PKCS#11 token, never extractable: 'pkcs11:token=LABEL;object=LABEL' "
    "(the new root's; with --intermediate-only the new intermediate's). Required when the current key is on a token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stdout).")
@pki_options
@pass_app
def begin(app: App, intermediate_only: bool, cross_sign: bool, key_uri: str | None, as_json: bool) -> None:
    """Create the next CA generation and trust it beside the current one.

    From here on new certificates come from the new CA. Rerunning while a rotation is in
    progress does nothing (and says so); after an interruption it completes the first run.

    \b
    Examples:
      grpcpki ca rotate begin
      grpcpki ca rotate begin --cross-sign          # for peers that only reload slowly
      grpcpki ca rotate begin --intermediate-only   # new issuing CA, same root
      grpcpki ca rotate begin --key-uri 'pkcs11:token=grpcpki;object=ca-g2'   # new key on a token
    """
    if intermediate_only and cross_sign:
        raise click.UsageError("--cross-sign cannot be combined with --intermediate-only: the root does not change")
    from grpcpki.engine.rotation import begin_rotation

    result = begin_rotation(app.pki(), intermediate_only=intermediate_only, cross_sign=cross_sign, key_uri=key_uri)
    if as_json:
        console.print_json(result.to_dict())
        return
    status = result.status
    if result.action == "already-in-progress":
        console.info(
            f"a rotation from generation {status.from_generation} to {status.to_generation} is already in progress "
            f"(phase {status.phase}); nothing to do"
        )
    else:
        verb = "resumed and completed" if result.action == "resumed" else "began"
        console.success(f"{verb} CA rotation: generation {status.from_generation} -> {status.to_generation} ({status.mode})")
        console.info(f"  new root:         {result.root.subject} (expires {result.root.not_after:%Y-%m-%d})")
        if result.intermediate is not None:
            console.info(f"  new intermediate: {result.intermediate.subject}")
        if result.cross is not None:
            console.info(f"  cross-signed by:  {result.cross.issuer}")
    console.info(f"  trust bundle:     {len(status.bundle)} root(s) in ca.crt")
    console.info(f"next: {status.next_step}")


@rotate.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (stdout).")
@pki_options
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the rotation phase, leaves still on the old CA, and whether finishing is safe.

    \b
    Examples:
      grpcpki ca rotate status
      grpcpki ca rotate status --json | jq .safe_to_finish
    """
    from grpcpki.engine.rotation import rotation_status

    result = rotation_status(app.pki())
    if as_json:
        console.print_json(result.to_dict())
        return
    _print_status(result)


def _print_status(status: RotationStatus) -> None:
    out = console.out()
    out.print(f"phase:            {status.phase}", highlight=False)
    out.print(f"issuing CA:       generation {status.generation}", highlight=False)
    if status.phase != "idle":
        out.print(f"rotation:         generation {status.from_generation} -> {status.to_generation} "
                  f"({status.mode}{', cross-signed' if status.cross_sign else ''})", highlight=False)
    out.print("trust bundle:", highlight=False)
    for root in status.bundle:
        out.print(f"  {root.subject}  serial {root.serial_hex[:16]}  expires {root.not_after:%Y-%m-%d}", highlight=False)
    if status.phase != "idle":
        out.print(f"on the old CA:    {len(status.old_leaves)} active certificate(s)", highlight=False)
        for record in status.old_leaves:
            out.print(f"  {record.kind:<6} {record.name}  (generation {record.ca_generation})", highlight=False)
        out.print(f"safe to finish:   {'yes' if status.safe_to_finish else 'no'}", highlight=False)
    out.print(f"next:             {status.next_step}", highlight=False)


@rotate.command("abort")
@click.option("--reissue", is_flag=True,
              help="Also reissue, from the previous CA, the certificates the new CA already issued "
              "(same names, usages and keys); without it abort refuses while there are any.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stdout).")
@pki_options
@pass_app
def abort(app: App, reissue: bool, as_json: bool) -> None:
    """Undo `ca rotate begin`: ca.crt trusts only the previous CA again, and it issues again.

    Possible until `ca rotate finish`. Certificates the new CA already issued (by `renew --all`
    during the overlap) would stop being trusted, so abort refuses and names them unless
    --reissue is given; then they are reissued by the previous CA in the same step, and their
    peers must reload them. The new CA's files are kept in archive/ca/gN-aborted-TIME/. Make
    every peer reload ca.crt afterwards.

    \b
    Examples:
      grpcpki ca rotate abort
      grpcpki ca rotate abort --reissue --json
    """
    from grpcpki.engine.rotation import abort_rotation, rotation_state

    pki = app.pki()
    state = rotation_state(pki)
    if reissue and state.from_generation is not None:
        # Unlock the previous CA now: a passphrase prompt must not wait inside the PKI lock.
        pki.load_ca(state.from_generation)
    result = abort_rotation(pki, reissue=reissue)
    if as_json:
        console.print_json(result.to_dict())
        return
    if result.action == "nothing-to-do":
        console.info("no CA rotation in progress; nothing to abort")
        return
    console.success(f"aborted the CA rotation: generation {result.restored_generation} issues again")
    for root in result.dropped:
        console.info(f"  dropped from ca.crt: {root.subject} (serial {root.serial_hex[:16]})")
    for record in result.reissued:
        console.info(f"  reissued by the previous CA: {record.kind} {record.name} (serial {record.serial[:16]}); "
                     f"its peers must reload it")
    if result.archive is not None:
        console.info(f"  the new CA's files are kept in {result.archive}")
    console.info("next: make every peer reload ca.crt")


@rotate.command("finish")
@click.option("--force", is_flag=True, help="Finish even though some active certificates still chain to the old CA "
              "(they stop being trusted).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stdout).")
@pki_options
@pass_app
def finish(app: App, force: bool, as_json: bool) -> None:
    """Drop the old CA from ca.crt and archive it.

    Refuses while active certificates still chain to the old CA (renew them with `grpcpki
    renew --all`). Run it only once every peer has reloaded ca.crt and its renewed
    certificate: a peer still presenting an old-CA certificate is rejected from then on.

    \b
    Examples:
      grpcpki ca rotate finish
      grpcpki ca rotate finish --force   # strand what still chains to the old CA
    """
    from grpcpki.engine.rotation import finish_rotation

    result = finish_rotation(app.pki(), force=force)
    if as_json:
        console.print_json(result.to_dict())
        return
    if result.action == "nothing-to-do":
        console.info("no CA rotation in progress; nothing to finish")
        return
    console.success(f"finished CA rotation: generation {result.status.generation} is now the only CA")
    for root in result.dropped:
        console.info(f"  dropped from ca.crt: {root.subject} (serial {root.serial_hex[:16]})")
    for record in result.stranded:
        console.warning(f"{record.kind} {record.name} still chains to the old CA and is no longer trusted; "
                        f"run `grpcpki renew {record.name}`")
