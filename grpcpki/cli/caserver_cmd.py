"""``grpcpki ca-server``: the CA service that workloads enroll and renew against."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grpcpki.cli import console
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.cli.params import HostPortType
from grpcpki.cli.stopping import stop_requested_by_signals

if TYPE_CHECKING:
    from grpcpki.caservice.server import IssueEvent
    from grpcpki.greeter.server import ReloadRecord

_FILE = click.Path(dir_okay=False, path_type=Path)


def _rate(value: str | None) -> tuple[int, timedelta] | None:
    if value is None:
        return None
    count, _, window = value.partition("/")
    from grpcpki.engine.durations import parse_duration
    from grpcpki.engine.errors import GrpcpkiError

    try:
        number = int(count)
        span = parse_duration(window or "1h")
    except (ValueError, GrpcpkiError):
        raise click.BadParameter(f"{value!r} is not COUNT/DURATION (e.g. 10/1h)", param_hint="--rate-limit") from None
    if number < 1:
        raise click.BadParameter("COUNT must be at least 1", param_hint="--rate-limit")
    return number, span


@click.command("ca-server")
@click.option("--listen", type=HostPortType(allow_port_zero=True), default="127.0.0.1:9443", show_default=True,
              help="mTLS address: every RPC, and the only one where Renew works (callers present their certificate).")
@click.option("--enroll-listen", type=HostPortType(allow_port_zero=True), default=None, metavar="HOST:PORT",
              help="Server-side TLS address for workloads without a certificate yet: Enroll, GetTrustBundle, "
              "GetCRL (gRPC Python cannot make a client certificate optional on one port).")
@click.option("--name", "-n", metavar="NAME", help="The service's own server certificate from the PKI.")
@click.option("--cert", type=_FILE, help="Certificate chain file to present instead of --name.")
@click.option("--key", type=_FILE, help="Private key of --cert.")
@click.option("--ca", type=_FILE, help="Trust bundle for client certificates with --cert [default: the PKI's ca.crt].")
@click.option("--max-days", type=click.IntRange(1, 3650), default=30, show_default=True,
              help="Longest lifetime of a certificate the service issues (tokens and renewals are capped by it).")
@click.option("--rate-limit", default="10/1h", show_default=True, metavar="COUNT/DURATION",
              help="At most COUNT certificates per identity (NAME) within DURATION, enrollments and renewals together.")
@click.option("--replica-id", default=None, metavar="ID",
              help="This replica's name in the audit rows [default: HOST:PID].")
@click.option("--grace", type=click.FloatRange(0, 300), default=5.0, show_default=True,
              help="Seconds in-flight calls get to finish on SIGTERM.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line on stdout when listening (for scripts).")
@pki_options
@pass_app
def ca_server(
    app: App, listen: str, enroll_listen: str | None, name: str | None, cert: Path | None, key: Path | None,
    ca: Path | None, max_days: int, rate_limit: str, replica_id: str | None, grace: float, as_json: bool,
) -> None:
    """Serve the CA to workloads: enrollment with one-time tokens, renewal over mTLS.

    Workloads call Enroll with a CSR and a token from `grpcpki token create` (the key never
    leaves them), then Renew over mTLS with their current certificate; GetTrustBundle serves
    ca.crt and GetCRL the newest CRL stored in the inventory (no CA key needed for either).
    Stateless: run replicas on several machines, each with its own copy of the PKI directory
    (same CA: key file or PKCS#11 token) and the same --db PostgreSQL inventory, behind any gRPC
    load balancer; each request takes the store's lock and transaction, so no serial or name is
    ever issued twice and the rate limit holds across replicas. Its own certificate is re-read
    when its files change, like `grpcpki serve`.

    \b
    Examples:
      grpcpki issue server ca.internal --ip 10.0.0.5
      grpcpki ca-server --name ca.internal --listen 0.0.0.0:9443 --enroll-listen 0.0.0.0:9444
      grpcpki ca-server --name ca.internal --max-days 7 --rate-limit 5/1h --replica-id ca-1
      grpcpki --db postgresql+psycopg://grpcpki@db.internal/pki ca-server --name ca.internal --replica-id ca-2
      grpcpki ca-server --name localhost --listen 127.0.0.1:0 --enroll-listen 127.0.0.1:0 --json
    """
    from grpcpki.caservice.server import CaServer, CaServerConfig
    from grpcpki.engine.enrollment import Policy
    from grpcpki.greeter.files import TlsFiles

    explicit = [flag for flag, value in (("--cert", cert), ("--key", key), ("--ca", ca)) if value is not None]
    if name and explicit:
        raise click.UsageError(f"--name {name} already gives the certificate, key and CA; drop {', '.join(explicit)}")
    if not name and (cert is None or key is None):
        raise click.UsageError("give the service's certificate: --name NAME, or --cert FILE and --key FILE")
    rate = _rate(rate_limit)
    assert rate is not None
    pki = app.pki()
    if name:
        material = pki.material(name)
        files = TlsFiles(chain=material.chain_path, key=material.key_path, ca=material.trust_path)
    else:
        files = TlsFiles(chain=cert, key=key, ca=ca or pki.trust_bundle_path)
    # Unlock the CA now: a wrong passphrase or PIN is one error at start, not one per request.
    pki.signing_ca()
    replica = replica_id or f"{socket.gethostname()}:{os.getpid()}"
    config = CaServerConfig(
        listen=listen, enroll_listen=enroll_listen, files=files, replica=replica, grace=grace,
        policy=Policy(max_days=max_days, rate_count=rate[0], rate_window=rate[1]),
    )

    def on_event(event: IssueEvent) -> None:
        # Plain writes: names and peers come from the network and are never read as markup.
        mark = "✓" if event.ok else "✗"
        sys.stderr.write(f"{mark} {event.method} from {event.peer}: {event.message}\n")
        sys.stderr.flush()

    def on_reload(record: ReloadRecord) -> None:
        sys.stderr.write(("✓ " if record.loaded else "! ") + record.message + "\n")
        sys.stderr.flush()

    server = CaServer(config, app.pki, on_event=on_event, on_reload=on_reload)
    bound = server.start()
    host = listen.rsplit(":", 1)[0]
    enroll_host = enroll_listen.rsplit(":", 1)[0] if enroll_listen else None
    stop = stop_requested_by_signals()
    if as_json:
        sys.stdout.write(json.dumps({
            "event": "listening", "mtls_address": f"{host}:{bound.mtls_port}", "mtls_port": bound.mtls_port,
            "enroll_address": f"{enroll_host}:{bound.tls_port}" if bound.tls_port else None,
            "enroll_port": bound.tls_port, "replica": replica, "pid": os.getpid(),
        }) + "\n")
        sys.stdout.flush()
    line = f"serving grpcpki.ca.v1.CertificateAuthority on {host}:{bound.mtls_port} (mTLS: Renew and all)"
    if bound.tls_port:
        line += f" and {enroll_host}:{bound.tls_port} (TLS: Enroll, GetTrustBundle, GetCRL)"
    console.success(line + f"; replica {replica}, certificates up to {max_days}d, {rate_limit} per identity")
    console.info("Ctrl-C or SIGTERM to stop")
    stop.wait()
    console.info(f"{stop.name} received: finishing in-flight calls (up to {grace:g} s)")
    server.stop(grace)
    console.success("stopped")
