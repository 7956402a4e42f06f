"""``grpcpki enroll`` and ``grpcpki renew --daemon``: a workload's side of the CA service."""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from grpcpki.cli import console
from grpcpki.cli.params import HostPortType

_FILE = click.Path(dir_okay=False, path_type=Path)
# Retry a failed pass after this, doubling up to the cap: a CA service restart or a network blip
# must not kill the sidecar, nor make a fleet hammer the service in lockstep.
_RETRY_FIRST, _RETRY_MAX = 30.0, 3600.0


@click.command("enroll")
@click.option("--ca-server", "target", type=HostPortType(), required=True,
              help="The CA service's enrollment address (`ca-server --enroll-listen`).")
@click.option("--token", envvar="GRPCPKI_ENROLL_TOKEN", show_envvar=True, required=True,
              help="The one-time token from `grpcpki token create` (prefer the environment variable: argv is "
              "visible to every user of the machine).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for key.pem (0600), chain.pem, ca.crt and enrollment.json.")
@click.option("--ca-bundle", type=_FILE, default=None,
              help="Trust bundle to verify the CA service with (the PKI's ca.crt) [default: the system's roots].")
@click.option("--kind", type=click.Choice(["server", "client"]), default=None,
              help="Refuse unless the token is for this kind [default: what the token says].")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON (stdout).")
def enroll(target: str, token: str, out_dir: Path, ca_bundle: Path | None, kind: str | None, as_json: bool) -> None:
    """Get a first certificate from the CA service with a one-time enrollment token.

    The private key is generated here and never sent: the service receives a CSR and signs it
    for the name, kind and SANs the operator gave the token. Writes key.pem (0600), chain.pem
    and ca.crt to --out atomically, plus enrollment.json for `grpcpki renew --daemon`.

    \b
    Examples:
      export GRPCPKI_ENROLL_TOKEN=grpcpki-enroll-...
      grpcpki enroll --ca-server ca.internal:9444 --ca-bundle ca.crt --out /etc/web/tls
      grpcpki serve --cert /etc/web/tls/chain.pem --key /etc/web/tls/key.pem --ca /etc/web/tls/ca.crt
    """
    from grpcpki.caservice import client
    from grpcpki.engine import workload

    if not token.strip():
        raise click.BadParameter("is empty", param_hint="--token")
    ca_pem = client.read_bundle(ca_bundle)
    fresh = workload.new_key_and_csr("workload")
    reply = client.enroll(target, token=token.strip(), csr_pem=fresh.csr_pem, kind=kind or "", ca_pem=ca_pem)
    workload.write_material(out_dir, key_pem=fresh.key_pem, chain_pem=reply.chain_pem,
                            trust_pem=reply.trust_bundle_pem)
    workload.write_state(out_dir, {"name": reply.name, "kind": reply.kind, "enrolled_via": target})
    not_after = datetime.fromtimestamp(reply.not_after_unix, UTC)
    if as_json:
        console.print_json({
            "name": reply.name, "kind": reply.kind, "serial": reply.serial,
            "not_after": f"{not_after:%Y-%m-%dT%H:%M:%SZ}", "key": str(out_dir / workload.KEY),
            "chain": str(out_dir / workload.CHAIN), "trust_bundle": str(out_dir / workload.TRUST),
        })
        return
    console.success(
        f"enrolled {reply.kind} {reply.name!r} (serial {reply.serial[:16]}), expires {not_after:%Y-%m-%d %H:%M}Z "
        f"({console.relative(not_after)})"
    )
    console.info(f"  private key:       {out_dir / workload.KEY} (generated here, never sent)")
    console.info(f"  certificate chain: {out_dir / workload.CHAIN}")
    console.info(f"  trust bundle:      {out_dir / workload.TRUST}")


def run_daemon(
    *, target: str, directory: Path, once: bool, force: bool, exec_command: str | None, as_json: bool,
    interval: timedelta | None = None,
) -> bool:
    """``renew --daemon``: keep DIR's certificate fresh against the CA service; True if all went well."""
    # Handlers only record the signal; the loop polls (as `grpcpki serve` does): a handler that
    # took a lock could deadlock against the interrupted main thread.
    received: list[str] = []
    wake: list[bool] = []

    def handle_stop(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)

    def handle_hup(_signum: int, _frame: object) -> None:
        wake.append(True)  # SIGHUP: check now (after an operator rotated the CA, say)

    if not once:
        signal.signal(signal.SIGTERM, handle_stop)
        signal.signal(signal.SIGINT, handle_stop)
        signal.signal(signal.SIGHUP, handle_hup)
    retry = _RETRY_FIRST
    while True:
        ok, next_at = _pass(target, directory, force=force, exec_command=exec_command, as_json=as_json)
        force = False
        if once:
            return ok
        now = datetime.now(UTC)
        if ok:
            retry = _RETRY_FIRST
            wait = (next_at - now).total_seconds() if next_at else 3600.0
            if interval is not None:
                wait = min(wait, interval.total_seconds())
            # Check the trust bundle at least hourly: a CA rotation must be seen before the old CA goes.
            wait = max(1.0, min(wait, 3600.0))
        else:
            wait = retry * random.uniform(0.8, 1.2)  # jitter: a fleet must not retry in lockstep
            retry = min(retry * 2, _RETRY_MAX)
        if not as_json:
            console.info(f"next check at {now + timedelta(seconds=wait):%Y-%m-%d %H:%M:%S} UTC")
        wake.clear()
        deadline = time.monotonic() + wait
        while not received and not wake and time.monotonic() < deadline:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        if received:
            console.info(f"{received[0]} received: stopping")
            return True


def _pass(target: str, directory: Path, *, force: bool, exec_command: str | None,
          as_json: bool) -> tuple[bool, datetime | None]:
    """One check: refresh ca.crt, renew if due, run the hook. (ok, when the next renewal falls due)."""
    from grpcpki.caservice import client
    from grpcpki.engine import workload
    from grpcpki.engine.errors import GrpcpkiError

    try:
        current = workload.read_current(directory)
        key_pem = (directory / workload.KEY).read_bytes()
        chain_pem = (directory / workload.CHAIN).read_bytes()
        trust_pem = (directory / workload.TRUST).read_bytes()
        bundle = client.trust_bundle(target, ca_pem=trust_pem, key_pem=key_pem, chain_pem=chain_pem)
        if bundle.trust_bundle_pem and workload.write_trust(directory, bundle.trust_bundle_pem):
            _say(as_json, {"event": "trust-bundle-updated", "path": str(directory / workload.TRUST)},
                 f"trust bundle updated: {directory / workload.TRUST}")
            trust_pem = bundle.trust_bundle_pem
        reason = "forced" if force else workload.renewal_reason(current, bundle.issuing_ca_pem)
        if reason is None:
            _say(as_json, {"event": "not-due", "serial": current.serial, "renew_at": _iso(current.renew_at())},
                 f"{current.name} not due: renews after {current.renew_at():%Y-%m-%d %H:%M}Z", quiet=True)
            return True, current.renew_at()
        state = workload.read_state(directory)
        fresh = workload.new_key_and_csr(current.name or str(state.get("name", "workload")))
        reply = client.renew(target, csr_pem=fresh.csr_pem, key_pem=key_pem, chain_pem=chain_pem, ca_pem=trust_pem)
        workload.write_material(directory, key_pem=fresh.key_pem, chain_pem=reply.chain_pem,
                                trust_pem=reply.trust_bundle_pem or trust_pem)
        not_after = datetime.fromtimestamp(reply.not_after_unix, UTC)
        _say(as_json, {"event": "renewed", "name": reply.name, "old_serial": current.serial, "serial": reply.serial,
                       "reason": reason, "not_after": _iso(not_after)},
             f"renewed {reply.kind} {reply.name} ({reason}): serial {current.serial[:12]} -> {reply.serial[:12]}, "
             f"expires {not_after:%Y-%m-%d %H:%M}Z", success=True)
        ok = True
        if exec_command:
            ok = _hook(exec_command, directory, reply, current.serial)
        return ok, workload.read_current(directory).renew_at()
    except GrpcpkiError as exc:
        console.render_error(exc.message, exc.hint)
        return False, None


def _hook(command: str, directory: Path, reply: object, old_serial: str) -> bool:
    from grpcpki.cli.renew_cmd import exec_timeout
    from grpcpki.engine import workload
    from grpcpki.engine.hooks import run_command

    name, kind, serial, not_after = (getattr(reply, a) for a in ("name", "kind", "serial", "not_after_unix"))
    hook = run_command(command, {
        "GRPCPKI_NAME": name, "GRPCPKI_KIND": kind, "GRPCPKI_SERIAL": serial, "GRPCPKI_OLD_SERIAL": old_serial,
        "GRPCPKI_NOT_AFTER": f"{datetime.fromtimestamp(not_after, UTC):%Y-%m-%dT%H:%M:%SZ}",
        "GRPCPKI_CERT_PATH": str((directory / workload.CHAIN).resolve()),
        "GRPCPKI_CHAIN_PATH": str((directory / workload.CHAIN).resolve()),
        "GRPCPKI_KEY_PATH": str((directory / workload.KEY).resolve()),
        "GRPCPKI_CA_PATH": str((directory / workload.TRUST).resolve()),
    }, timeout=exec_timeout())
    if not hook.ok:
        console.render_error(f"--exec for {name} {hook.outcome}; the renewed certificate is in place",
                             "fix the command and run it by hand")
    return hook.ok


def _iso(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _say(as_json: bool, document: dict[str, object], line: str, *, quiet: bool = False,
         success: bool = False) -> None:
    if as_json:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()
    elif success:
        console.success(line)
    else:
        console.info(line)
