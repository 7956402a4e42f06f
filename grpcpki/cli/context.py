"""The object every command receives (``@click.pass_obj``): where the PKI is and how to unlock it."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from grpcpki.cli.params import CheckedPath, DurationType
from grpcpki.engine.errors import PassphraseError

if TYPE_CHECKING:
    from grpcpki.engine.hsm import TokenLogin
    from grpcpki.engine.lock import LockHolder
    from grpcpki.engine.pki import LockOptions, Pki

PASSPHRASE_ENV = "GRPCPKI_PASSPHRASE"
_MAX_PASSPHRASE = 4096  # far above any passphrase; OpenSSL's own PEM prompts stop at 1024
PKI_DIR_META = "grpcpki.pki_dir"
LOCK_TIMEOUT_ENV = "GRPCPKI_LOCK_TIMEOUT"  # read by the engine (grpcpki.engine.lock) when no option is given


@dataclass
class App:
    pki_dir: str
    passphrase_file: str | None = None
    lock_timeout: float | None = None
    _cached_passphrase: bytes | None = field(default=None, repr=False)
    _exposures_checked: bool = field(default=False, repr=False)
    pin_file: str | None = None

    @property
    def pki_path(self) -> Path:
        return Path(self.pki_dir)

    def passphrase(self, *, confirm: bool = False, purpose: str = "CA key passphrase") -> bytes:
        """The CA key passphrase: --passphrase-file, then $GRPCPKI_PASSPHRASE, then a prompt.

        Never an argv value: argv is visible to every user on the machine (ps, /proc).
        """
        if self._cached_passphrase is not None:
            return self._cached_passphrase
        value: bytes | None = None
        if self.passphrase_file:
            try:
                # A pipe is fine here (--passphrase-file <(pass show ca)), so no regular-file check,
                # but a bounded read: --passphrase-file /dev/zero must not fill the memory.
                with open(self.passphrase_file, "rb") as handle:
                    raw = handle.read(_MAX_PASSPHRASE + 1)
                if len(raw) > _MAX_PASSPHRASE:
                    raise PassphraseError(
                        f"passphrase file {self.passphrase_file} holds more than {_MAX_PASSPHRASE} bytes",
                        "point --passphrase-file at a file holding only the passphrase",
                    )
            except OSError as exc:
                raise PassphraseError(
                    f"cannot read passphrase file {self.passphrase_file}: {exc.strerror}",
                    "check the path given to --passphrase-file",
                ) from None
            # Files written with `echo` end in a newline that is not part of the secret.
            value = raw.rstrip(b"\r\n")
        elif os.environ.get(PASSPHRASE_ENV):
            value = os.environ[PASSPHRASE_ENV].encode()
        elif sys.stdin is not None and sys.stdin.isatty():
            value = click.prompt(purpose, hide_input=True, confirmation_prompt=confirm, err=True).encode()
        else:
            raise PassphraseError(
                "the CA key is encrypted and no passphrase was given",
                f"set {PASSPHRASE_ENV} or pass --passphrase-file FILE",
            )
        if not value:
            raise PassphraseError("the passphrase is empty", "use a non-empty passphrase")
        self._cached_passphrase = value
        return value

    def pki(self) -> Pki:
        """Open the PKI directory; the passphrase is asked for only if a signing key is needed."""
        from grpcpki.engine.pki import Pki

        pki = Pki.open(
            self.pki_path, passphrase=self.passphrase, lock=self.lock_options(), token_login=self.token_login()
        )
        self.warn_exposures()
        if pki.inventory.shared:
            # Another directory on the shared inventory may have signed a newer CRL (a revoke
            # there): `serve` and peers read this directory's crl.pem (docs/team.md).
            from grpcpki.engine.revocation import sync_crl_file

            sync_crl_file(pki)
        return pki

    def warn_exposures(self) -> None:
        """Say (once, on stderr) when the CA keys are less protected than docs/security.md promises,
        with the command that fixes it: a readable key or key folder, or a weak KDF."""
        if self._exposures_checked:
            return
        self._exposures_checked = True
        from grpcpki.engine.protection import check_ca_protection

        ctx = click.get_current_context(silent=True)
        reencrypting = ctx is not None and ctx.command_path.endswith("ca reencrypt")
        for exposure in check_ca_protection(self.pki_path):
            if reencrypting and "ca reencrypt" in exposure.fix:
                continue
            from grpcpki.cli import console  # rich only when there is something to say

            console.warning(f"{exposure.problem}; fix: {exposure.fix}")

    def token_login(self) -> TokenLogin:
        """How to log in to a PKCS#11 token holding CA keys: --pin-file, else the environment
        (engine/hsm.py), else a prompt on a terminal. Never an argv value."""
        from grpcpki.engine.hsm import TokenLogin

        def prompt(purpose: str) -> bytes:
            return str(click.prompt(purpose, hide_input=True, err=True)).encode()

        interactive = sys.stdin is not None and sys.stdin.isatty()
        return TokenLogin.from_env(pin_file=self.pin_file, prompt=prompt if interactive else None)

    def lock_options(self) -> LockOptions:
        """How a command that changes the PKI waits for another one: it says whom it waits for, once."""
        from grpcpki.engine.lock import lock_timeout_from_env
        from grpcpki.engine.pki import LockOptions

        timeout = self.lock_timeout if self.lock_timeout is not None else lock_timeout_from_env()
        ctx = click.get_current_context(silent=True)
        command = ctx.command_path if ctx is not None else "grpcpki"

        def on_wait(holder: LockHolder) -> None:
            from grpcpki.cli import console

            console.info(
                f"waiting for {holder.describe()} to finish with {self.pki_path} "
                f"(giving up after {timeout:g}s; --lock-timeout changes it)"
            )

        return LockOptions(timeout=timeout, on_wait=on_wait, command=command)


pass_app = click.make_pass_decorator(App)


def _set_pki(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        # Shell completion parses without running the group, so there is no App yet: keep the
        # value where the completer (cli/completion_cmd.py) looks for it.
        ctx.meta[PKI_DIR_META] = value
        app = ctx.find_object(App)
        if app is not None:
            app.pki_dir = value


def _set_passphrase_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(App).passphrase_file = value  # type: ignore[union-attr]


def _set_lock_timeout(ctx: click.Context, _param: click.Parameter, value: float | None) -> None:
    if value is not None:
        ctx.find_object(App).lock_timeout = value  # type: ignore[union-attr]


LOCK_TIMEOUT_HELP = (
    "How long to wait while another grpcpki command changes the PKI, then give up (a DURATION such as "
    "2m or 30s) [default: 2m, or $GRPCPKI_LOCK_TIMEOUT]; 0s fails at once. Reading commands never wait."
)


def lock_timeout_option(*, expose: bool) -> Any:
    return click.option(
        "--lock-timeout",
        type=DurationType(maximum=timedelta(days=1), as_seconds=True),
        default=None,
        metavar="DURATION",
        expose_value=expose,
        is_eager=not expose,
        callback=None if expose else _set_lock_timeout,
        help=LOCK_TIMEOUT_HELP,
    )


def _set_pin_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(App).pin_file = value  # type: ignore[union-attr]


def pki_options(func: Any) -> Any:
    """Accept --pki, --passphrase-file, --pin-file and --lock-timeout after the command name too
    (`grpcpki issue ... --pki DIR`)."""
    func = lock_timeout_option(expose=False)(func)
    func = click.option(
        "--pin-file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_pin_file,
        help="File holding the user PIN of the PKCS#11 token with the CA key "
        "(else $GRPCPKI_PKCS11_PIN_FILE, $GRPCPKI_PKCS11_PIN, a prompt).",
    )(func)
    func = click.option(
        "--passphrase-file",
        type=CheckedPath(dir_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_passphrase_file,
        help="File holding the CA key passphrase (else $GRPCPKI_PASSPHRASE, else a prompt).",
    )(func)
    func = click.option(
        "--pki",
        type=CheckedPath(file_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_pki,
        help="PKI directory [default: ./pki or $GRPCPKI_HOME].",
    )(func)
    return func


DB_ENV = "GRPCPKI_DB"  # read by the engine (grpcpki.engine.inventory.database_url)


def _set_db(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        # Through the environment: every inventory and lock the engine opens for this command,
        # and any grpcpki a renewal hook runs, use the same database.
        os.environ[DB_ENV] = value


db_option = click.option(
    "--db",
    metavar="URL",
    envvar=DB_ENV,
    show_envvar=True,
    default=None,
    expose_value=False,
    is_eager=True,
    callback=_set_db,
    help="Keep the inventory in this database instead of PKI/inventory.db, to share it between operators "
    "and machines: postgresql+psycopg://USER@HOST:5432/DBNAME (docs/team.md).",
)
