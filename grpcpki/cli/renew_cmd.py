"""``grpcpki renew`` and ``grpcpki revoke``: keep leaf certificates fresh, and withdraw them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grpcpki.cli import console
from grpcpki.cli.completion_cmd import complete_names
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import DURATION, DaysType, DurationType, HostPortType
from grpcpki.cli.progress import refresh_now
from grpcpki.cli.stopping import stop_on_signals
from grpcpki.engine.errors import GrpcpkiError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from grpcpki.engine.hooks import HookResult
    from grpcpki.engine.pki import Pki
    from grpcpki.engine.rotation import RenewResult

# ctx.meta key of --exec-timeout (kept out of the function's parameters: the engine's default applies without it).
EXEC_TIMEOUT = "grpcpki.exec_timeout"


def _set_exec_timeout(ctx: click.Context, value: timedelta | None) -> None:
    if value is not None:
        ctx.meta[EXEC_TIMEOUT] = value


def exec_timeout() -> timedelta:
    """--exec-timeout of the running command, else the engine's default."""
    from grpcpki.engine.hooks import DEFAULT_HOOK_TIMEOUT

    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get(EXEC_TIMEOUT) if ctx is not None else None
    return value if isinstance(value, timedelta) else DEFAULT_HOOK_TIMEOUT


# Show a progress bar only when there is enough work to watch.
_PROGRESS_THRESHOLD = 5
_REASONS = ("unspecified", "keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged")


@click.command("renew")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=complete_names())
@click.option("--all", "all_", is_flag=True, help="Consider every active leaf certificate.")
@click.option(
    "--within", type=DURATION, default=None, metavar="DURATION",
    help="Also renew certificates expiring within this window (e.g. 30d). "
    "Without it, a certificate is due once two thirds of its lifetime has passed.",
)
@click.option("--force", is_flag=True, help="Renew even certificates that are not due.")
@click.option(
    "--rekey/--keep-key", default=True, show_default=True,
    help="Generate a new private key (default), or reissue for the existing one (for pinned keys).",
)
@click.option("--days", type=DaysType(1, 3650), default=None,
              help="Validity of the new certificates in days [default: the same as the old ones].")
@click.option("--dry-run", is_flag=True, help="Say what would be renewed; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON (stdout).")
@click.option(
    "--watch", type=DurationType(timedelta(seconds=1), timedelta(days=30)), default=None, metavar="INTERVAL",
    help="Keep running as a sidecar: check again every INTERVAL (a DURATION from 1s to 30d, e.g. 1h). "
    "Anything well under a third of the shortest lifetime works: 1h suits 90-day certificates.",
)
@click.option(
    "--exec", "exec_command", default=None, metavar="CMD",
    help="Run CMD with /bin/sh after each renewed certificate, with GRPCPKI_NAME, GRPCPKI_KIND, "
    "GRPCPKI_SERIAL, GRPCPKI_CHAIN_PATH, GRPCPKI_KEY_PATH... set (docs/commands.md). A failing CMD "
    "makes the exit status 1; the renewal stays.",
)
@click.option(
    "--exec-timeout", type=DurationType(timedelta(seconds=1), timedelta(days=1)), default="5m", show_default=True,
    metavar="DURATION", expose_value=False, is_eager=True, callback=lambda ctx, _param, value: _set_exec_timeout(ctx, value),
    help="Stop a --exec CMD still running after DURATION (1s to 1d): its whole process group is killed and "
    "it counts as a failed hook (the renewal stays). Example: --exec-timeout 30s.",
)
@click.option("--quiet", "-q", is_flag=True,
              help="Print nothing when nothing is due (renewals, failures and --json output still show).")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, metavar="N",
              help="Sign and write a big pass (128 certificates or more) in N worker processes "
              "[default: one per CPU]; 1 keeps all the work in this process. Example: --jobs 1.")
@click.option("--daemon", is_flag=True,
              help="Workload mode: keep --dir's certificate (from `grpcpki enroll`) fresh against --ca-server, "
              "at about two thirds of its lifetime, and pick up CA rotations.")
@click.option("--ca-server", "ca_server", type=HostPortType(), default=None,
              help="With --daemon: the CA service's mTLS address (`ca-server --listen`).")
@click.option("--dir", "workload_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --daemon: the directory `grpcpki enroll --out` wrote.")
@click.option("--once", is_flag=True, help="With --daemon: one check (and renewal if due), then exit.")
@pki_options
@pass_app
def renew(
    app: App,
    names: tuple[str, ...],
    all_: bool,
    within: timedelta | None,
    force: bool,
    rekey: bool,
    days: int | None,
    dry_run: bool,
    as_json: bool,
    watch: timedelta | None,
    exec_command: str | None,
    quiet: bool,
    jobs: int | None = None,
    daemon: bool = False,
    ca_server: str | None = None,
    workload_dir: Path | None = None,
    once: bool = False,
) -> None:
    """Reissue certificates that are due, with the same name, SANs and usages.

    A certificate is due when two thirds of its lifetime has passed, when it expires within
    --within, or when it was issued by an older CA generation (after `grpcpki ca rotate
    begin`). Files are replaced atomically and the old ones kept in archive/NAME/SERIAL/, so
    servers that re-read their files pick the new certificate up without a restart. Running it
    again right away does nothing: it is safe from cron.

    \b
    Examples:
      grpcpki renew --all                 # cron: renew whatever is due, exit 1 on any failure
      grpcpki renew localhost --force     # renew one now
      grpcpki renew --all --within 30d --dry-run --json
      grpcpki renew --all --watch 1h      # sidecar loop
      grpcpki renew --all --quiet --exec 'systemctl reload envoy' --exec-timeout 1m
      grpcpki renew --all --force --jobs 4  # sign a big pass in 4 worker processes
      grpcpki renew --all --exec 'grpcpki export "$GRPCPKI_NAME" --format k8s | kubectl apply -f -'
      grpcpki renew --daemon --ca-server ca.internal:9443 --dir /etc/web/tls --exec 'pkill -HUP envoy'
    Exit status: 0 when every due certificate was renewed (or none was due) and every --exec
    command succeeded, 1 otherwise. Errors go to stderr, with or without --json.
    """
    if daemon or once or ca_server or workload_dir:
        _daemon(names, all_, exec_command, watch, as_json, force, ca_server, workload_dir, once, daemon)
        return
    if names and all_:
        raise click.UsageError("give certificate NAMEs or --all, not both")
    if not names and not all_:
        raise click.UsageError("name the certificates to renew, or pass --all")
    if exec_command is not None and not exec_command.strip():
        raise click.BadParameter("is empty: give the command to run after each renewal", param_hint="--exec")
    if watch is None:
        ok = _renew_once(app, names, within=within, force=force, rekey=rekey, days=days, dry_run=dry_run,
                         as_json=as_json, exec_command=exec_command, quiet=quiet, jobs=jobs)
        if not ok:
            sys.exit(1)
        return
    _watch(app, names, watch, within=within, force=force, rekey=rekey, days=days, dry_run=dry_run, as_json=as_json,
           exec_command=exec_command, quiet=quiet, jobs=jobs)


def _daemon(
    names: tuple[str, ...], all_: bool, exec_command: str | None, watch: timedelta | None, as_json: bool,
    force: bool, ca_server: str | None, workload_dir: Path | None, once: bool, daemon: bool,
) -> None:
    """`renew --daemon`: a workload renewing against the CA service (cli/enroll_cmd.py)."""
    if not daemon:
        raise click.UsageError("--ca-server, --dir and --once go with --daemon")
    if names or all_:
        raise click.UsageError("--daemon renews the certificate in --dir: drop NAMEs and --all")
    if ca_server is None or workload_dir is None:
        raise click.UsageError("--daemon needs --ca-server HOST:PORT and --dir DIR")
    if exec_command is not None and not exec_command.strip():
        raise click.BadParameter("is empty: give the command to run after each renewal", param_hint="--exec")
    from grpcpki.cli.enroll_cmd import run_daemon

    ok = run_daemon(target=ca_server, directory=workload_dir, once=once, force=force, exec_command=exec_command,
                    as_json=as_json, interval=watch)
    if not ok:
        sys.exit(1)


def _renew_once(
    app: App, names: Sequence[str], *, within: timedelta | None, force: bool, rekey: bool, days: int | None,
    dry_run: bool, as_json: bool, compact: bool = False, exec_command: str | None = None, quiet: bool = False,
    jobs: int | None = None,
) -> bool:
    """One pass; True if nothing failed (renewals and --exec hooks)."""
    from grpcpki.engine.rotation import renew as renew_engine

    if dry_run:
        return _dry_run(app, names, within=within, force=force, as_json=as_json, compact=compact, quiet=quiet)
    pki = app.pki()
    if pki.signing_key_needs_secret() and _anything_due(pki, names, within=within, force=force):
        # Unlock the CA before taking the lock, so a passphrase or PIN prompt never holds up
        # other writers, a wrong one is one error rather than one per certificate, and a prompt
        # never shares the line with the progress bar. Only when something is due: cron with
        # nothing to do is never asked. The engine plans the pass once, under the lock.
        pki.signing_ca()
    progress: Progress | None = None
    task: TaskID | None = None

    def planned(due: int) -> None:
        nonlocal progress, task
        if not as_json and due >= _PROGRESS_THRESHOLD and console.err().is_terminal:
            from rich.progress import Progress

            # Refreshed from advance(), not by rich's own thread: worker processes are forked only
            # while no other thread runs (engine/workers.py).
            progress = Progress(console=console.err(), transient=True, auto_refresh=False)
            progress.start()
            task = progress.add_task("renewing", total=due)

    def advance(result: RenewResult) -> None:
        if progress is not None and task is not None and result.action != "skipped":
            progress.advance(task)
            refresh_now(progress)

    try:
        results = renew_engine(pki, names, within=within, force=force, rekey=rekey, days=days, dry_run=dry_run,
                               on_plan=planned, on_result=advance, jobs=jobs)
    finally:
        if progress is not None:
            progress.stop()
    failed = [r for r in results if r.action == "failed"]
    if not as_json:
        _report(results, dry_run=dry_run, quiet=quiet)
    # After the report, so a hook's own output follows the line saying what it was run for.
    hooks = _run_hooks(pki, results, exec_command) if exec_command else {}
    if as_json:
        document: dict[str, object] = {
            "dry_run": dry_run,
            "renewed": sum(r.action == "renewed" for r in results),
            "would_renew": sum(r.action == "would-renew" for r in results),
            "skipped": sum(r.action == "skipped" for r in results),
            "failed": len(failed),
            "hooks_failed": sum(not h.ok for h in hooks.values()),
            "certificates": [
                r.to_dict() | ({"exec": hooks[r.name].to_dict()} if r.name in hooks else {}) for r in results
            ],
        }
        if compact:
            # One line per pass, so a --watch log is JSON Lines.
            sys.stdout.write(json.dumps(document, default=console._json_default) + "\n")
            sys.stdout.flush()
        else:
            console.print_json(document)
        # Errors go to stderr in JSON mode too: cron mails stderr, and a script may not read the document.
        for result in failed:
            console.render_error(f"could not renew {result.name}: {result.reason}")
    for hook in hooks.values():
        if not hook.ok:
            console.render_error(
                f"--exec for {hook.name} {hook.outcome}; the renewed certificate is in place",
                "fix the command and run it by hand (or renew again with --force)",
            )
    return not failed and all(h.ok for h in hooks.values())


def _anything_due(pki: Pki, names: Sequence[str], *, within: timedelta | None, force: bool) -> bool:
    """Would this pass renew anything? Stops at the first certificate that is due (with --force,
    the first one), so it costs far less than the plan the engine makes under the lock."""
    from grpcpki.engine.rotation import needs_new_csr, plan_renewals, renewal_due

    if names:
        return any(d.due for d in plan_renewals(pki, names, within=within, force=force))
    generation = pki.generation
    now = datetime.now(UTC)
    for record in pki.inventory.iter_records(kinds=("server", "client")):
        if needs_new_csr(record):
            continue
        if force or renewal_due(record, current_generation=generation, within=within, now=now)[0]:
            return True
    return False


def _run_hooks(pki: Pki, results: Sequence[RenewResult], command: str) -> dict[str, HookResult]:
    """Run --exec once per renewed certificate, after every renewal of the pass is committed."""
    from grpcpki.engine.hooks import run_hook

    hooks = {}
    for result in results:
        if result.action == "renewed" and result.record is not None:
            hooks[result.name] = run_hook(
                command, result.record, old_serial=result.old_serial, trust_path=pki.trust_bundle_path,
                pki_path=pki.path, timeout=exec_timeout(),
            )
    return hooks


def _dry_run(
    app: App, names: Sequence[str], *, within: timedelta | None, force: bool, as_json: bool, compact: bool,
    quiet: bool = False,
) -> bool:
    """What a pass would renew, streamed from the inventory: a line per certificate that is due
    and one summary line, never a line per certificate skipped (100,000 of them, issue 10)."""
    from grpcpki.engine.rotation import RenewDecision, due_reason, needs_new_csr, plan_renewals, renew_after

    pki = app.pki()
    now = datetime.now(UTC)
    decisions: Iterable[RenewDecision]
    if names:
        decisions = plan_renewals(pki, names, within=within, force=force, now=now)
    else:
        generation = pki.generation

        def stream() -> Iterator[RenewDecision]:
            for record in pki.inventory.iter_records(kinds=("server", "client")):
                if needs_new_csr(record):  # never renewed here, never forced: grpcpki has no key for it
                    yield RenewDecision(record, False, "")
                    continue
                reason = due_reason(record, current_generation=generation, within=within, now=now)
                # A certificate that is not due is only counted (never worded) unless forced.
                yield RenewDecision(record, reason is not None or force, reason or ("forced" if force else ""))

        decisions = stream()
    due_count = skipped = 0
    next_due: tuple[datetime, str] | None = None
    newline = "\n" if not compact else ""
    indent = "  " if not compact else ""
    separator = f"{{{newline}{indent}\"dry_run\": true,{newline or ' '}{indent}\"certificates\": ["
    for decision in decisions:
        record = decision.record
        if not decision.due:
            skipped += 1
            renew_at = renew_after(record)
            if next_due is None or renew_at < next_due[0]:
                next_due = (renew_at, record.name)
            continue
        due_count += 1
        if as_json:
            item = {"name": record.name, "kind": record.kind, "action": "would-renew", "reason": decision.reason,
                    "old_serial": record.serial, "new_serial": None,
                    "not_after": f"{record.not_after:%Y-%m-%dT%H:%M:%SZ}"}
            sys.stdout.write(f"{separator}{newline}{indent * 2}{json.dumps(item)}")
            separator = ","
        else:
            # Plain writes: names come from certificates and must never be read as rich markup.
            sys.stderr.write(f"would renew {record.kind} {record.name}: {decision.reason}\n")
    if as_json:
        if separator.endswith("["):
            sys.stdout.write(separator)
        close = f"{newline}{indent}]" if due_count else "]"
        sys.stdout.write(
            f"{close},{newline or ' '}{indent}\"renewed\": 0, \"would_renew\": {due_count}, "
            f"\"skipped\": {skipped}, \"failed\": 0{newline}}}\n"
        )
        sys.stdout.flush()
        return True
    sys.stderr.flush()
    if quiet and due_count == 0:
        return True
    if due_count == 0 and skipped == 0:
        console.info("no active certificates to renew")
        return True
    summary = f"dry run: {due_count} would be renewed, {skipped} not due"
    if next_due is not None:
        summary += f"; the next falls due on {next_due[0]:%Y-%m-%d} ({next_due[1]})"
    console.info(summary)
    return True


def _report(results: Sequence[RenewResult], *, dry_run: bool, quiet: bool = False) -> None:
    if quiet:
        # Cron mails any output: only what happened (or went wrong) is worth a mail.
        results = [r for r in results if r.action != "skipped"]
        if not results:
            return
    # Plain writes unless a person is watching: at 10,000 renewals rich's per-line rendering
    # costs seconds, and cron reads plain text anyway (names never pass through markup either way).
    plain = not console.err().is_terminal
    lines: list[str] = []
    for result in results:
        if result.action == "renewed":
            line = (
                f"renewed {result.kind} {result.name} ({result.reason}): serial {result.old_serial[:12]} -> "
                f"{(result.new_serial or '')[:12]}, expires {result.not_after:%Y-%m-%d} "
                f"({console.relative(result.not_after)})"
            )
            if plain:
                lines.append(f"✓ {line}\n")
            else:
                console.success(line)
        elif result.action == "would-renew":
            console.info(f"would renew {result.kind} {result.name}: {result.reason}")
        elif result.action == "failed":
            console.render_error(f"could not renew {result.name}: {result.reason}")
    if lines:
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
    counts = {a: sum(r.action == a for r in results) for a in ("renewed", "would-renew", "skipped", "failed")}
    if not results:
        console.info("no active certificates to renew")
    elif dry_run:
        console.info(f"dry run: {counts['would-renew']} would be renewed, {counts['skipped']} not due")
    elif counts["renewed"] == 0 and counts["failed"] == 0:
        # One line for the certificates that are not due, not one line each (issue 10).
        console.info(f"nothing to renew: {counts['skipped']} not due" if counts["skipped"] else "nothing to renew")
    elif counts["skipped"]:
        console.info(f"{counts['skipped']} not due")


def _watch(
    app: App, names: Sequence[str], interval: timedelta, *, within: timedelta | None, force: bool, rekey: bool,
    days: int | None, dry_run: bool, as_json: bool, exec_command: str | None = None, quiet: bool = False,
    jobs: int | None = None,
) -> None:
    """Renew, sleep, repeat. Errors are reported and retried next round: a sidecar must not die
    on one bad pass (a locked inventory, a file being restored)."""
    if force:
        raise click.UsageError("--force with --watch would reissue every certificate every INTERVAL")
    # A sidecar is stopped by SIGTERM (Kubernetes, systemd) or ^C: the pass in hand finishes, so
    # no renewal is cut between its files and its hook, then the loop exits 0.
    with stop_on_signals() as stop:
        while not stop:
            try:
                _renew_once(app, names, within=within, force=False, rekey=rekey, days=days, dry_run=dry_run,
                            as_json=as_json, compact=True, exec_command=exec_command, quiet=quiet, jobs=jobs)
            except GrpcpkiError as exc:
                console.render_error(exc.message, exc.hint)
            if stop:
                break
            if not as_json and not quiet:
                next_run = datetime.now(UTC) + interval
                console.info(f"next check at {next_run:%Y-%m-%d %H:%M:%S} UTC")
            stop.wait(interval.total_seconds())


@click.command("revoke")
@click.argument("target", metavar="NAME|SERIAL", shell_complete=complete_names())
@click.option("--reason", type=click.Choice(_REASONS), default="unspecified", show_default=True,
              help="RFC 5280 reason code recorded in the CRL.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stdout).")
@pki_options
@pass_app
def revoke(app: App, target: str, reason: str, as_json: bool) -> None:
    """Revoke a certificate and rewrite PKI/crl.pem, signed by its issuing CA.

    TARGET is the name of an active certificate or a serial number (hex, colons allowed).
    Its files move to archive/NAME/SERIAL/. `grpcpki serve` enforces it at once: it checks
    each call's client certificate against crl.pem and refuses a revoked one with
    UNAUTHENTICATED on its next call, without a restart. Other peers notice once they reload
    crl.pem: OpenSSL-based ones take it with -CRLfile, Python servers check serials per call
    with grpcpki.engine.revoked_serials, Go and Java through their own CRL settings (see
    docs/rotation.md). A revoked certificate cannot be renewed: issue a new one.

    \b
    Examples:
      grpcpki revoke web --reason keyCompromise
      grpcpki revoke 5a:3f:...:9c
    """
    from grpcpki.engine.revocation import revoke as revoke_engine

    result = revoke_engine(app.pki(), target, reason=reason)
    if as_json:
        console.print_json(result.to_dict())
        return
    record = result.record
    if result.already_revoked:
        console.info(f"{record.kind} {record.name} (serial {record.serial}) was already revoked; CRL rewritten")
    else:
        console.success(f"revoked {record.kind} {record.name} (serial {record.serial}): {reason}")
    crl = result.crl
    listed = sum(c.revoked for c in crl.crls)
    console.info(
        f"  CRL: {crl.path} (number {crl.number}, {listed} revoked, next update {crl.next_update:%Y-%m-%d}; "
        f"`grpcpki renew` refreshes it)"
    )
