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
@click.option("--pki", "pki_dir", type=click.Path(file_okay=False), default=None,
              help="Build the demo PKI here instead of a temporary directory (must not hold a CA yet).")
@click.option("--keep", is_flag=True, help="Keep the temporary directory and print its path.")
@click.option("--json", "as_json", is_flag=True, help="Print what was proven as JSON.")
@pass_app
def demo(app: App, pki_dir: str | None, keep: bool, as_json: bool) -> None:
    """Run the whole story: CA, certificates, mTLS Greeter, a call, a rejected call.

    Everything happens in a temporary directory (or --pki) and on 127.0.0.1 with a port the
    OS picks, so it needs no network and leaves nothing behind.

    \b
    Examples:
      grpcpki demo
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
            task = progress.add_task("starting", total=STEPS)

            def step(description: str) -> Callable[[], None]:
                progress.update(task, description=description)
                return lambda: progress.advance(task)

            _run(pki_path, report, step)
            progress.update(task, description="done")
        if as_json:
            console.print_json({"ok": report.ok, "pki": report.pki if report.kept else None, "steps": report.steps})
        else:
            _render(report)
    if not report.ok:
        raise GrpcpkiError("the demo did not prove mutual TLS end to end", "see the steps above")


def _run(pki_path: Path, report: DemoReport, step: Callable[[str], Callable[[], None]]) -> None:
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
    title = "[green]✓ mutual TLS works end to end[/]" if report.ok else "[red]✗ the demo failed[/]"
    console.out().print(Panel(table, title=title, title_align="left", expand=False))
    if report.kept:
        console.info(f"The PKI is in {report.pki}; try: grpcpki --pki {report.pki} list")
