"""``grpcpki apply [FILE]``: make the PKI match a manifest (engine: grpcpki.engine.manifest)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grpcpki.cli.context import App, pass_app, pki_options

if TYPE_CHECKING:
    from grpcpki.engine.manifest import Applied, Change, Manifest, Plan

# How many planned changes a terminal shows before the progress bar (--dry-run shows them all).
_PLAN_PREVIEW = 15
_VERBS = {"create": "created", "renew": "renewed", "reissue": "reissued"}


@click.command("apply")
@click.argument("manifest", metavar="[FILE]", default="grpcpki.toml", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and what was done as one JSON document (stdout).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when nothing changes (cron); errors still go to stderr.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, metavar="N",
              help="Sign and write big batches (128 certificates or more) in N worker processes "
              "[default: one per CPU]; 1 keeps all the work in this process. Example: --jobs 1.")
@pki_options
@pass_app
def apply(app: App, manifest: Path, dry_run: bool, as_json: bool, quiet: bool, jobs: int | None = None) -> None:
    """Make the PKI match a manifest of services (default: ./grpcpki.toml).

    Creates what is missing, renews what is due, reissues what drifted (names, kind, usages
    or key type changed), and leaves the rest alone; certificates the manifest does not
    name are never touched. The plan is printed first. Running it twice changes nothing
    the second time, so it is safe from cron. The format is in docs/apply.md.

    \b
    Examples:
      grpcpki apply                       # ./grpcpki.toml
      grpcpki apply services.toml --dry-run
      grpcpki apply --json | jq .plan
      grpcpki apply -q                    # cron: silent unless something changed
      grpcpki apply --jobs 4              # sign in 4 worker processes

    \b
    A manifest:
      [ca]
      name = "Example CA"
      [defaults]
      spiffe_id = "spiffe://example.org/{name}"
      [[service]]
      name = "orders"
      dns = ["orders.internal"]
      [[service]]
      name = "worker-{i:03}"
      count = 200
    """
    from grpcpki.engine.manifest import load_manifest

    started = time.perf_counter()
    spec = load_manifest(manifest)
    if _nothing_to_change(app, spec, dry_run=dry_run, as_json=as_json, quiet=quiet, started=started):
        return

    # rich, cryptography and SQLAlchemy from here on: the no-op path above needs none of them.
    from grpcpki.cli import console
    from grpcpki.engine.manifest import create_ca, plan
    from grpcpki.engine.pki import Pki

    exists = Pki.exists(app.pki_path)
    if not exists and spec.ca is None:
        from grpcpki.engine.errors import NoCAError

        raise NoCAError(
            f"no CA in {app.pki_path.resolve()} and {manifest} has no [ca] table",
            f"add [ca] with name = \"...\" to {manifest}, run `grpcpki init-ca`, or point --pki at your PKI",
        )
    pki = app.pki() if exists else None
    if dry_run:
        the_plan = plan(pki, spec)
        _show_plan(the_plan, app, as_json=as_json, quiet=quiet, everything=True)
        return
    if pki is None:
        assert spec.ca is not None
        passphrase = app.passphrase(confirm=True, purpose="New CA key passphrase") if spec.ca.encrypt else None
        pki = create_ca(app.pki_path, spec.ca, passphrase=passphrase, lock=app.lock_options())
        if not as_json:
            console.success(f"created CA {spec.ca.name!r} in {app.pki_path}")
    with pki.locked():
        # Planned under the lock: what is renewed or replaced cannot change under our feet.
        the_plan = plan(pki, spec)
        interactive = console.err().is_terminal and not as_json
        _show_plan(the_plan, app, as_json=as_json, quiet=quiet, everything=False, interactive=interactive)
        applied = _run(pki, the_plan.changes, interactive=interactive, as_json=as_json, jobs=jobs)
    elapsed = time.perf_counter() - started
    if as_json:
        _write_document(the_plan, [a.to_dict() for a in applied], elapsed)
        return
    if applied:
        counts = {verb: sum(1 for a in applied if a.change.action == action) for action, verb in _VERBS.items()}
        done = ", ".join(f"{n:,} {verb}" for verb, n in counts.items() if n)
        console.success(f"applied {manifest}: {done}, {the_plan.unchanged:,} unchanged, in {elapsed:.1f}s")


def _nothing_to_change(
    app: App, spec: Manifest, *, dry_run: bool, as_json: bool, quiet: bool, started: float
) -> bool:
    """The no-op path (grpcpki/engine/applyplan.py): when a read-only look at the inventory finds
    nothing to change, say so exactly as the full path would, without importing cryptography or
    SQLAlchemy or opening the store. False: the full path plans (again, under the lock)."""
    from grpcpki.engine.applyplan import plan_if_unchanged

    the_plan = plan_if_unchanged(app.pki_path, spec)
    if the_plan is None:
        return False
    app.warn_exposures()  # what app.pki() says when the full path opens the store
    _show_plan(the_plan, app, as_json=as_json, quiet=quiet, everything=dry_run)
    if as_json and not dry_run:
        _write_document(the_plan, [], time.perf_counter() - started)
    return True


def _write_document(the_plan: Plan, applied: list[dict[str, object]], elapsed: float) -> None:
    document = {"dry_run": False, "plan": the_plan.to_dict(), "applied": applied, "seconds": round(elapsed, 3)}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _status(message: str) -> None:
    """console.info without importing rich where it would print the same bytes: text with no
    control characters (rich drops some of those), which the console neither styles nor wraps."""
    if message.isprintable():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        return
    from grpcpki.cli import console

    console.info(message)


def _show_plan(
    the_plan: Plan, app: App, *, as_json: bool, quiet: bool, everything: bool, interactive: bool = False
) -> None:
    if the_plan.notes:
        from grpcpki.cli import console

        for note in the_plan.notes:
            console.warning(note)
    if as_json:
        if everything:
            sys.stdout.write(json.dumps({"dry_run": True, "plan": the_plan.to_dict()}, indent=2) + "\n")
        return
    changes = the_plan.changes
    if not changes and not the_plan.create_ca:
        if not quiet:
            _status(
                f"nothing to change: {the_plan.unchanged:,} services in {the_plan.manifest.path} are up to date"
                + _unmanaged(the_plan)
            )
        return
    from grpcpki.cli import console

    summary = (
        f"plan for {app.pki_path} from {the_plan.manifest.path}: "
        + (("create the CA, " if the_plan.create_ca else "")
           + f"create {the_plan.count('create'):,}, renew {the_plan.count('renew'):,}, "
           f"reissue {the_plan.count('reissue'):,}, unchanged {the_plan.unchanged:,}")
        + _unmanaged(the_plan)
    )
    if everything:
        # --dry-run: the plan is the output, one line per change on stdout.
        for change in changes:
            sys.stdout.write(_plan_line(change) + "\n")
        sys.stdout.flush()
        console.info(summary)
        return
    console.info(summary)
    if interactive:
        for change in changes[:_PLAN_PREVIEW]:
            sys.stderr.write(f"  {_plan_line(change)}\n")
        if len(changes) > _PLAN_PREVIEW:
            sys.stderr.write(f"  ... and {len(changes) - _PLAN_PREVIEW:,} more (`grpcpki apply --dry-run` lists all)\n")
        sys.stderr.flush()


def _unmanaged(the_plan: Plan) -> str:
    if not the_plan.unmanaged:
        return ""
    return f"; {the_plan.unmanaged:,} certificates not in the manifest are left alone"


def _plan_line(change: Change) -> str:
    # Plain text, not rich markup: names and SANs come from a file someone else may have written.
    spec = change.spec
    if change.action == "create":
        return f"create {spec.role.value} {spec.name}: {', '.join(str(s) for s in spec.sans)}"
    return f"{change.action} {spec.role.value} {spec.name}: {change.reason}"


def _run(
    pki: object, changes: Sequence[Change], *, interactive: bool, as_json: bool, jobs: int | None = None
) -> list[Applied]:
    from grpcpki.cli import console
    from grpcpki.engine.manifest import apply_plan as run_plan
    from grpcpki.engine.pki import Pki

    assert isinstance(pki, Pki)
    if not changes:
        return []

    def report(batch: Sequence[Applied]) -> None:
        # One line per change, once its batch is committed: what cron mails is what is on disk.
        if interactive or as_json:
            return
        for done in batch:
            record = done.record
            why = f" ({done.change.reason})" if done.change.action != "create" else ""
            sys.stderr.write(
                f"{_VERBS[done.change.action]} {record.kind} {record.name}{why}: serial {record.openssl_serial}, "
                f"expires {record.not_after:%Y-%m-%d}\n"
            )
        sys.stderr.flush()

    if interactive:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from grpcpki.cli.progress import refresh_now

        # auto_refresh=False: no rich thread, so signing workers may be forked (cli/progress.py).
        with Progress(TextColumn("applying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console.err(), transient=True, auto_refresh=False) as progress:
            task = progress.add_task("applying", total=len(changes))

            def advance(_change: Change) -> None:
                progress.advance(task)
                refresh_now(progress)

            return run_plan(pki, changes, on_signed=advance, on_batch=report, jobs=jobs)
    return run_plan(pki, changes, on_batch=report, jobs=jobs)
