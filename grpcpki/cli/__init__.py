"""The ``grpcpki`` command line: a thin click layer over :mod:`grpcpki.engine`.

Commands live one module per group and are imported only when invoked, so that
``grpcpki list`` never pays for importing grpc (see ``bench/startup.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import textwrap
import warnings
from typing import NoReturn

import click

from grpcpki import __version__
from grpcpki.cli.context import App, db_option, lock_timeout_option
from grpcpki.cli.params import CheckedPath

# command name -> "module:attribute", imported on first use.
LAZY_COMMANDS: dict[str, str] = {
    "init-ca": "grpcpki.cli.ca_cmd:init_ca",
    "ca": "grpcpki.cli.rotate_cmd:ca_group",
    "issue": "grpcpki.cli.issue_cmd:issue",
    "list": "grpcpki.cli.inventory_cmd:list_cmd",
    "inspect": "grpcpki.cli.inventory_cmd:inspect_cmd",
    "renew": "grpcpki.cli.renew_cmd:renew",
    "revoke": "grpcpki.cli.renew_cmd:revoke",
    "serve": "grpcpki.cli.greeter_cmd:serve",
    "greet": "grpcpki.cli.greeter_cmd:greet",
    "demo": "grpcpki.cli.demo_cmd:demo",
    "doctor": "grpcpki.cli.diagnose_cmd:doctor",
    "probe": "grpcpki.cli.diagnose_cmd:probe",
    "export": "grpcpki.cli.export_cmd:export_cmd",
    "completion": "grpcpki.cli.completion_cmd:completion",
    "apply": "grpcpki.cli.apply_cmd:apply",
    "sign": "grpcpki.cli.sign_cmd:sign",
    "ca-server": "grpcpki.cli.caserver_cmd:ca_server",
    "token": "grpcpki.cli.token_cmd:token_group",
    "enroll": "grpcpki.cli.enroll_cmd:enroll",
}

# command name -> its short help, as `grpcpki --help` lists it. Kept here as data so that the
# top-level help imports no command module (each would pull in cryptography, rich or grpc:
# 3.4x the start-up of a click-only app, issue 10). tests/speed/test_startup.py checks that each
# entry equals the command's own first sentence, so this table cannot drift: a new command adds
# one line here (the test prints it).
SHORT_HELP: dict[str, str] = {
    "init-ca": "Create a certificate authority in the PKI directory.",
    "ca": "Manage the certificate authority (create it with `grpcpki init-ca`).",
    "issue": "Issue a server or client certificate signed by the PKI's CA.",
    "list": "List the certificates issued by this PKI.",
    "inspect": "Show what a certificate (or key) says, and whether it verifies against this PKI.",
    "renew": "Reissue certificates that are due, with the same name, SANs and usages.",
    "revoke": "Revoke a certificate and rewrite PKI/crl.pem, signed by its issuing CA.",
    "serve": "Run the helloworld Greeter server with mTLS (default), --tls or --plaintext.",
    "greet": "Call SayHello on a Greeter server and explain any failure in plain words.",
    "demo": "Run the whole story: CA, certificates, mTLS Greeter, a call, a rejected call.",
    "doctor": "Check certificates, keys and trust bundles offline, and say how to fix what is wrong.",
    "probe": "Handshake with a running server and report what a gRPC client will run into.",
    "export": "Export certificate NAME for Kubernetes, Java, or any tool that reads PEM or the environment.",
    "completion": "Print the completion script for SHELL: commands, options, and certificate names.",
    "apply": "Make the PKI match a manifest of services (default: ./grpcpki.toml).",
    "sign": "Sign a certificate signing request as a server or client certificate.",
    "ca-server": "Serve the CA to workloads: enrollment with one-time tokens, renewal over mTLS.",
    "token": "Create, list and revoke one-time enrollment tokens for `grpcpki ca-server`.",
    "enroll": "Get a first certificate from the CA service with a one-time enrollment token.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        for name, target in LAZY_COMMANDS.items():
            module_name = target.partition(":")[0]
            if importlib.util.find_spec(module_name) is not None:
                names.add(name)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        module_name, _, attribute = LAZY_COMMANDS[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        loaded: click.Command = getattr(module, attribute)
        return loaded

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but reads each short help from :data:`SHORT_HELP` instead of importing
        the command (a command missing from the table is imported, so it still shows)."""
        rows: list[tuple[str, str]] = []
        names = self.list_commands(ctx)
        if not names:
            return
        # The same width click gives: three times the default spacing.
        limit = formatter.width - 6 - max(len(name) for name in names)
        for name in names:
            text = SHORT_HELP.get(name)
            if text is None:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            elif len(text) > limit:
                text = textwrap.shorten(text, max(limit, 3), placeholder="...", break_on_hyphens=False)
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="grpcpki")
@click.option(
    "--pki",
    "pki_dir",
    type=CheckedPath(file_okay=False, path_type=str),
    envvar="GRPCPKI_HOME",
    default="pki",
    show_default=True,
    show_envvar=True,
    help="PKI directory (CA, certificates, inventory).",
)
@click.option(
    "--passphrase-file",
    type=CheckedPath(dir_okay=False, path_type=str),
    default=None,
    help="File holding the CA key passphrase (else $GRPCPKI_PASSPHRASE, else a prompt).",
)
@click.option(
    "--pin-file",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="File holding the PKCS#11 token's user PIN, for a CA key on a token "
    "(else $GRPCPKI_PKCS11_PIN_FILE, $GRPCPKI_PKCS11_PIN, a prompt).",
)
@lock_timeout_option(expose=True)
@db_option
@click.pass_context
def cli(
    ctx: click.Context, pki_dir: str, passphrase_file: str | None, pin_file: str | None, lock_timeout: float | None
) -> None:
    """grpcpki: certificates that gRPC accepts, and proof that they work.

    \b
    Quick tour:
      grpcpki init-ca --name "Example CA"
      grpcpki issue server localhost
      grpcpki issue client web --spiffe-id spiffe://example.org/web
      grpcpki serve --name localhost &
      grpcpki greet --name web --server localhost:50051
      grpcpki demo            # all of the above in a temporary directory

    The PKI directory is ./pki unless --pki or GRPCPKI_HOME says otherwise.
    """
    ctx.obj = App(pki_dir=pki_dir, passphrase_file=passphrase_file, lock_timeout=lock_timeout, pin_file=pin_file)


def main(args: list[str] | None = None, prog_name: str | None = None) -> NoReturn:
    """Entry point: run the CLI, render expected errors as one line, exit with click's codes."""
    from grpcpki.engine.errors import GrpcpkiError

    # cryptography 51 warns on stderr whenever a DSA key or certificate is loaded; the doctor and
    # inspect already report such a key as weak (weak-key), in words a user can act on. Matched by
    # message: importing the warning's class here would load cryptography for `--help` too.
    warnings.filterwarnings("ignore", message="DSA is deprecated")

    try:
        result = cli.main(args=args, prog_name=prog_name or "grpcpki", standalone_mode=False)
        # With standalone_mode=False click returns ctx.exit()'s code (or the command's value).
        sys.exit(result if isinstance(result, int) else 0)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # Usage errors (exit 2) and our own CLI errors: click already knows how to show them.
        exc.show()
        sys.exit(exc.exit_code)
    except GrpcpkiError as exc:
        _render_error(exc.message, exc.hint)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected error becomes a message
        if os.environ.get("GRPCPKI_DEBUG"):
            raise
        _render_error(
            f"unexpected error: {type(exc).__name__}: {_first_line(exc)}",
            "this is a bug in grpcpki; rerun with GRPCPKI_DEBUG=1 for the traceback and report it",
        )
        sys.exit(1)


def _render_error(message: str, hint: str | None) -> None:
    # rich is imported only when there is an error to show: `--help` and a clean run skip it.
    from grpcpki.cli.console import render_error

    render_error(message, hint)


def _first_line(exc: BaseException) -> str:
    """An exception's message without what follows its first line (SQLAlchemy appends the SQL
    statement, its parameters and a link): the error stays one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
