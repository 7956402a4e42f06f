"""``grpcpki demo``: the whole story, end to end, in a few seconds.

CA -> server and client certificates -> the Greeter over mTLS on a loopback port -> a call
that proves both sides authenticated each other -> and a call without a client certificate
that proves the server really enforces it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app
from grpcpki.cli.params import CheckedPath
from grpcpki.engine.errors import GrpcpkiError

CLIENT_SPIFFE_ID = "spiffe://example.org/ns/demo/sa/greeter-client"
STEPS = 6


@dataclass
class DemoReport:
    pki: str
    kept: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = False

    def add(self, step: str, **facts: Any) -> None:
        self.steps.append({"step": step, **facts})


@contextmanager
def _workspace(pki_dir: str | None, keep: bool) -> Iterator[Path]:
    if pki_dir is not None:
        yield Path(pki_dir)
        return
    root = Path(tempfile.mkdtemp(prefix="grpcpki-demo-"))
    try:
        yield root / "pki"
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


@click.command("demo")
@click.option("--pki", "pki_dir", type=CheckedPath(file_okay=False), default=None,
              help="Build the demo PKI here instead of a temporary directory (must not hold a CA yet).")
@click.option("--keep", is_flag=True, help="Keep the temporary directory and print its path.")
@click.option("--rotate", is_flag=True,
              help="Then renew both leaves and rotate the CA under live traffic, counting failed calls (there should be none).")
@click.option("--json", "as_json", is_flag=True, help="Print what was proven as JSON.")
@pass_app
def demo(app: App, pki_dir: str | None, keep: bool, rotate: bool, as_json: bool) -> None:
    """Run the whole story: CA, certificates, mTLS Greeter, a call, a rejected call.

    Everything happens in a temporary directory (or --pki) and on 127.0.0.1 with a port the
    OS picks, so it needs no network and leaves nothing behind. With --rotate, clients keep
    calling while the server certificate, the client certificate and then the CA itself are
    replaced underneath them.

    \b
    Examples:
      grpcpki demo
      grpcpki demo --rotate        # zero-downtime rotation, live
      grpcpki demo --keep          # then look at the files it made
      grpcpki demo --json
    """
    del app  # the demo never touches the user's PKI unless --pki names one
    from grpcpki.engine.errors import CAExistsError
    from grpcpki.engine.pki import Pki

    if pki_dir is not None and Pki.exists(pki_dir):
        raise CAExistsError(f"a CA already exists in {pki_dir}", "give --pki a new directory, or leave it out")
    with _workspace(pki_dir, keep) as pki_path:
        report = DemoReport(pki=str(pki_path), kept=keep or pki_dir is not None)
        progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            # Transient: the panel below says what happened; a finished bar would only be noise.
            console=console.err(), transient=True,
        )
        with progress:
            task = progress.add_task("starting", total=STEPS + (len(ROTATION_STEPS) if rotate else 0))

            def step(description: str) -> Callable[[], None]:
                progress.update(task, description=description)
                return lambda: progress.advance(task)

            _run(pki_path, report, step, rotate=rotate, progress=progress, task=task)
            progress.update(task, description="done")
        if as_json:
            console.print_json({"ok": report.ok, "pki": report.pki if report.kept else None, "steps": report.steps})
        else:
            _render(report)
    if not report.ok:
        raise GrpcpkiError("the demo did not prove mutual TLS end to end", "see the steps above")


def _run(
    pki_path: Path,
    report: DemoReport,
    step: Callable[[str], Callable[[], None]],
    *,
    rotate: bool = False,
    progress: Progress | None = None,
    task: Any = None,
) -> None:
    # The refused call makes grpc core log 'Handshake failed ... PEER_DID_NOT_RETURN_A_CERTIFICATE'
    # at INFO, over the progress display. The demo reports that outcome itself; grpc reads
    # GRPC_VERBOSITY once, when it is first imported, so set it before the imports below.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from grpcpki.engine.pki import Pki
    from grpcpki.engine.profiles import Role
    from grpcpki.greeter.client import ClientConfig, GreeterClient
    from grpcpki.greeter.files import TlsFiles
    from grpcpki.greeter.identity import AllowList
    from grpcpki.greeter.server import GreeterServer, ServerConfig

    done = step("creating the CA")
    pki = Pki.init(pki_path, name="grpcpki demo CA")
    root = pki.ca_records()[0]
    report.add("init-ca", subject=root.subject, key_type=root.key_type, not_after=root.not_after)
    done()

    done = step("issuing the server certificate for localhost")
    server = pki.issue(Role.SERVER, "localhost")
    report.add("issue-server", name="localhost", sans=list(server.sans), serial=server.serial)
    done()

    done = step("issuing the client certificate")
    client = pki.issue(Role.CLIENT, "greeter-client", sans=[CLIENT_SPIFFE_ID], name_as_san=False)
    report.add("issue-client", name="greeter-client", sans=list(client.sans), serial=client.serial)
    done()

    done = step("starting the Greeter with mTLS on 127.0.0.1")
    server_material = pki.material("localhost")
    client_material = pki.material("greeter-client")
    config = ServerConfig(
        listen="127.0.0.1:0",
        mode="mtls",
        files=TlsFiles(server_material.chain_path, server_material.key_path, server_material.trust_path),
        allow=AllowList.of([CLIENT_SPIFFE_ID]),
        grace=1.0,
    )
    with GreeterServer(config) as greeter:
        assert greeter.info is not None
        port = greeter.info.port
        report.add("serve", address=f"127.0.0.1:{port}", mode="mtls", allow=[CLIENT_SPIFFE_ID])
        done()

        done = step("calling SayHello with the client certificate")
        # Dial 'localhost', as a user would: the server certificate's DNS SAN is checked.
        client_config = ClientConfig(
            target=f"localhost:{port}", mode="mtls",
            files=TlsFiles(client_material.chain_path, client_material.key_path, client_material.trust_path),
            timeout=5.0,
        )
        with GreeterClient(client_config) as greeter_client:
            result = greeter_client.say_hello("grpcpki demo")
        report.add(
            "greet", ok=result.ok, status=result.code, reply=result.reply, latency_ms=round(result.latency_ms, 1),
            identity_seen_by_server=result.identity, server_verified_as="localhost",
            cause=result.diagnosis.cause if result.diagnosis else None,
        )
        done()

        done = step("calling again without a client certificate (must be refused)")
        anonymous = ClientConfig(
            target=f"localhost:{port}", mode="tls", files=TlsFiles(ca=client_material.trust_path), timeout=5.0
        )
        with GreeterClient(anonymous) as anonymous_client:
            refused = anonymous_client.say_hello("anonymous")
        report.add("greet-without-certificate", ok=refused.ok, refused=not refused.ok, status=refused.code)
        done()
        report.ok = bool(result.ok and result.identity == CLIENT_SPIFFE_ID and not refused.ok)
        if rotate and report.ok:
            rotation = _rotate_under_traffic(pki, greeter, client_config, step, progress, task)
            report.add("rotation", **rotation)
            report.ok = rotation["failed_calls"] == 0 and rotation["served_new_certificate_each_step"]


def _render(report: DemoReport) -> None:
    steps = {s["step"]: s for s in report.steps}
    greet = steps.get("greet", {})
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    if "init-ca" in steps:
        table.add_row("CA", escape(f"{steps['init-ca']['subject']} ({steps['init-ca']['key_type']})"))
    if "issue-server" in steps:
        table.add_row("server cert", escape(", ".join(steps["issue-server"]["sans"])))
    if "issue-client" in steps:
        table.add_row("client cert", escape(", ".join(steps["issue-client"]["sans"])))
    if "serve" in steps:
        table.add_row("server", f"{steps['serve']['address']} (mTLS, client certificate required)")
    if greet:
        if greet.get("ok"):
            table.add_row("reply", escape(f"{greet['reply']!r} in {greet['latency_ms']} ms"))
            table.add_row("client saw", "the server prove it is [bold]localhost[/] with a certificate from the demo CA")
            table.add_row("server saw", escape(f"the client prove it is {greet['identity_seen_by_server']}"))
        else:
            table.add_row("call", f"[red]failed[/] {escape(str(greet.get('status')))}: {escape(str(greet.get('cause')))}")
    refused = steps.get("greet-without-certificate")
    if refused:
        verdict = "[green]refused[/]" if refused["refused"] else "[red]accepted (mTLS not enforced!)[/]"
        table.add_row("no client cert", f"{verdict} ({refused['status']})")
    rotation = steps.get("rotation")
    if rotation:
        verdict = "[green]no downtime[/]" if rotation["failed_calls"] == 0 else "[red]calls failed[/]"
        table.add_row(
            "rotation",
            f"{verdict}: {rotation['successful_calls']} calls ok, {rotation['failed_calls']} failed while both "
            f"certificates were renewed and the CA rotated to generation {rotation['ca_generation']}",
        )
        if rotation["last_failure"]:
            table.add_row("last failure", escape(rotation["last_failure"]))
    title = "[green]✓ mutual TLS works end to end[/]" if report.ok else "[red]✗ the demo failed[/]"
    console.out().print(Panel(table, title=title, title_align="left", expand=False))
    if report.kept:
        console.info(f"The PKI is in {report.pki}; try: grpcpki --pki {report.pki} list")


ROTATION_STEPS = (
    "renewing the server certificate",
    "renewing the client certificate",
    "rotating the CA: new CA; the trust bundle holds old + new",
    "moving every certificate to the new CA",
    "finishing the rotation: the old CA leaves the trust bundle",
)
# Calls each step must see succeed after it, on fresh connections, before the next step:
# every intermediate state is exercised under traffic, not just the endpoints.
CALLS_PER_STEP = 5


class _TrafficLoop:
    """Clients calling SayHello in a loop while the PKI changes under them.

    One dials a fresh connection per call and re-reads its files each time (how a client
    follows rotation); the other keeps one connection, which must survive too (grpc keeps
    established sessions when the server's credentials change).
    """

    def __init__(self, fresh: Any, persistent: Any) -> None:
        import threading

        self.ok = 0
        self.failed = 0
        self.fresh_ok = 0
        self.last_failure: str | None = None
        self._clients = (fresh, persistent)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(client, client is fresh), daemon=True) for client in self._clients
        ]

    def __enter__(self) -> _TrafficLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for client in self._clients:
            client.close()

    def _loop(self, client: Any, fresh: bool) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            result = client.say_hello("rotation", seq=seq)
            with self._lock:
                if result.ok:
                    self.ok += 1
                    self.fresh_ok += fresh
                else:
                    self.failed += 1
                    self.last_failure = f"{result.code}: {result.diagnosis.cause if result.diagnosis else result.details}"
            self._stop.wait(0.02)

    def wait_for_fresh_calls(self, count: int, tick: Callable[[], None] = lambda: None, timeout: float = 10.0) -> bool:
        import time

        target = self.fresh_ok + count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tick()
            if self.fresh_ok >= target:
                return True
            time.sleep(0.01)
        return False


def _rotate_under_traffic(
    pki: Any, greeter: Any, client_config: Any, step: Callable[[str], Callable[[], None]],
    progress: Progress | None, task: Any,
) -> dict[str, Any]:
    import dataclasses

    from grpcpki.engine.rotation import begin_rotation, finish_rotation, renew
    from grpcpki.greeter.client import GreeterClient

    actions: list[Callable[[], object]] = [
        lambda: renew(pki, ["localhost"], force=True),
        lambda: renew(pki, ["greeter-client"], force=True),
        lambda: begin_rotation(pki),
        lambda: renew(pki),  # every leaf still chaining to the old CA is due
        lambda: finish_rotation(pki),
    ]
    fresh = GreeterClient(dataclasses.replace(client_config, new_connection=True))
    persistent = GreeterClient(client_config)
    served: list[str] = []
    every_step_served_new = True
    with _TrafficLoop(fresh, persistent) as traffic:
        traffic.wait_for_fresh_calls(CALLS_PER_STEP)
        for description, action in zip(ROTATION_STEPS, actions, strict=True):
            done = step(description)
            before = greeter.reloader.current.leaf.serial_hex if greeter.reloader else None
            action()

            def show_counter(description: str = description) -> None:
                if progress is not None:
                    progress.update(task, description=f"{description} [{traffic.ok} calls ok, {traffic.failed} failed]")

            # Calls after the change use it: the server picks up new files on the next handshake.
            traffic.wait_for_fresh_calls(CALLS_PER_STEP, show_counter)
            current = greeter.reloader.current.leaf.serial_hex if greeter.reloader else None
            served.append(current or "")
            server_changed = description.startswith(("renewing the server", "moving every"))
            if server_changed and current == before:
                every_step_served_new = False
            done()
    bundle = pki.trust_bundle_path.read_bytes().count(b"BEGIN CERTIFICATE")
    return {
        "steps": list(ROTATION_STEPS),
        "successful_calls": traffic.ok,
        "failed_calls": traffic.failed,
        "last_failure": traffic.last_failure,
        "served_serials": served,
        "served_new_certificate_each_step": every_step_served_new,
        "ca_generation": pki.generation,
        "cas_in_trust_bundle": bundle,
    }
