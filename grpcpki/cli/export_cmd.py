"""``grpcpki export NAME --format k8s|pkcs12|truststore|pem|env``: material in the form its user reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from grpcpki.cli import console
from grpcpki.cli.completion_cmd import complete_names
from grpcpki.cli.context import App, pass_app, pki_options
from grpcpki.engine.errors import PassphraseError

PASSWORD_ENV = "GRPCPKI_EXPORT_PASSWORD"
FORMATS = ("k8s", "pkcs12", "truststore", "pem", "env")
_DESCRIPTIONS = {
    "k8s": "Kubernetes Secret (kubernetes.io/tls)",
    "pkcs12": "PKCS#12 keystore",
    "truststore": "PKCS#12 truststore",
    "pem": "combined PEM",
    "env": "shell environment variables",
}


@click.command("export")
@click.argument("name", shell_complete=complete_names())
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="k8s: Secret manifest; pkcs12: Java keystore (key + chain); truststore: Java truststore "
              "(the CA bundle); pem: chain + key in one file; env: shell variable assignments.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE (mode 0600, replaced atomically) instead of stdout.")
@click.option("--namespace", default=None, help="k8s: metadata.namespace (default: none, kubectl's current one).")
@click.option("--secret-name", default=None, help="k8s: metadata.name [default: NAME-tls, made DNS-safe].")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"pkcs12/truststore: file holding the store password (else ${PASSWORD_ENV}, else a prompt).")
@click.option("--env-prefix", default="TLS_", show_default=True,
              help="env: prefix of the variable names (PREFIXCERT, PREFIXKEY, PREFIXCA, PREFIXNAME).")
@click.option("--include-ca", is_flag=True, help="pem: append the trust bundle (ca.crt) after the key.")
@click.option("--json", "as_json", is_flag=True, help="With --out: describe what was written as JSON (stdout).")
@pki_options
@pass_app
def export_cmd(
    app: App, name: str, fmt: str, out_path: Path | None, namespace: str | None, secret_name: str | None,
    password_file: Path | None, env_prefix: str, include_ca: bool, as_json: bool,
) -> None:
    """Export certificate NAME for Kubernetes, Java, or any tool that reads PEM or the environment.

    Exports hold the private key (except truststore), so they are written like keys: mode 0600,
    atomically, to --out FILE; or to stdout for a pipe (never to a terminal). Run it again after
    `grpcpki renew` to carry the new certificate.

    \b
    Formats:
      k8s         Secret of type kubernetes.io/tls: tls.crt (chain), tls.key, ca.crt (trust bundle)
      pkcs12      Java keystore: key entry NAME with its chain (AES-256-CBC, PBKDF2-SHA256)
      truststore  Java truststore: every CA of ca.crt as a trusted entry (same encryption)
      pem         chain, then private key, in one file (--include-ca appends ca.crt)
      env         export TLS_NAME=... TLS_CERT=... TLS_KEY=... TLS_CA=... (PEM text, for eval or `.`)

    \b
    Examples:
      grpcpki export api --format k8s --namespace prod | kubectl apply -f -
      grpcpki export api --format pkcs12 --out api.p12 --password-file store.pass
      grpcpki export api --format truststore --out truststore.p12 --password-file store.pass
      grpcpki export web --format pem --out web.pem
      eval "$(grpcpki export web --format env)"
    """
    from grpcpki.engine.export import export, needs_password, validate_env_prefix, validate_namespace
    from grpcpki.engine.export import validate_secret_name
    from grpcpki.engine.errors import InvalidNameError

    _check_flags(fmt, namespace=namespace, secret_name=secret_name, password_file=password_file,
                 env_prefix=env_prefix, include_ca=include_ca, as_json=as_json, out_path=out_path)
    checks = [("--namespace", validate_namespace, namespace), ("--secret-name", validate_secret_name, secret_name),
              ("--env-prefix", validate_env_prefix, env_prefix)]
    for flag, validate, value in checks:
        try:
            if value is not None:
                validate(value)
        except InvalidNameError as exc:
            raise click.BadParameter(f"{exc.message} ({exc.hint})", param_hint=flag) from None
    if out_path is None and sys.stdout.isatty():
        what = "binary PKCS#12 data" if needs_password(fmt) else "a private key"
        raise click.UsageError(f"the {fmt} export is {what}: pass --out FILE, or pipe it (| kubectl apply -f -)")
    pki = app.pki()
    pki.find(name)  # an unknown NAME is reported before a password prompt
    password = _store_password(password_file) if needs_password(fmt) else None
    result = export(pki, name, fmt, password=password, namespace=namespace, secret_name=secret_name,
                    env_prefix=env_prefix, include_ca=include_ca)
    if out_path is None:
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
        return
    from grpcpki.engine.storage import PRIVATE_FILE_MODE, atomic_write

    atomic_write(out_path, result.data, PRIVATE_FILE_MODE)
    if as_json:
        console.print_json(result.to_dict() | {"path": str(out_path), "mode": "0600"})
        return
    console.success(
        f"exported {result.kind} certificate {name!r} (serial {result.serial}, expires {result.not_after:%Y-%m-%d}) "
        f"as a {_DESCRIPTIONS[fmt]} to {out_path} (mode 0600)"
    )


def _check_flags(
    fmt: str, *, namespace: str | None, secret_name: str | None, password_file: Path | None, env_prefix: str,
    include_ca: bool, as_json: bool, out_path: Path | None,
) -> None:
    """Options for another format are refused up front, not silently ignored."""
    misplaced = [
        ("--namespace", namespace is not None, "k8s"),
        ("--secret-name", secret_name is not None, "k8s"),
        ("--password-file", password_file is not None, "pkcs12 or truststore"),
        ("--env-prefix", env_prefix != "TLS_", "env"),
        ("--include-ca", include_ca, "pem"),
    ]
    for flag, given, formats in misplaced:
        if given and fmt not in formats.split(" or "):
            raise click.UsageError(f"{flag} applies to --format {formats}, not {fmt}")
    if as_json and out_path is None:
        raise click.UsageError("--json describes the file written with --out; without --out the export itself goes to stdout")


def _store_password(password_file: Path | None) -> bytes:
    """--password-file, then $GRPCPKI_EXPORT_PASSWORD, then a prompt; never argv (ps shows argv)."""
    if password_file is not None:
        from grpcpki.engine.export import read_password_file

        value = read_password_file(password_file)
    elif os.environ.get(PASSWORD_ENV):
        value = os.environ[PASSWORD_ENV].encode()
    elif sys.stdin is not None and sys.stdin.isatty():
        value = click.prompt("Store password", hide_input=True, confirmation_prompt=True, err=True).encode()
    else:
        raise PassphraseError(
            "the export needs a store password and none was given", f"pass --password-file FILE or set {PASSWORD_ENV}"
        )
    if not value:
        raise PassphraseError("the store password is empty", "use a non-empty password (Java refuses empty ones)")
    return value
