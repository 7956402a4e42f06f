"""The CA key on a real SoftHSM2 token, through the real `grpcpki` entry point.

What must hold: the CA key is generated on the token and cannot leave it (CKA_SENSITIVE,
not CKA_EXTRACTABLE); leaves, CRLs and cross certificates signed there are accepted by
`openssl verify -crl_check` and by a live gRPC mTLS call; no PEM private key of any CA is
anywhere in the PKI directory; the PIN is never printed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hsm_support import PIN, TOKEN, Server, SoftHsm, grpcpki, ok, openssl_verify, pem_private_keys, uri
from support import Result, assert_clean_error, cli_env, requires_openssl, tree

pytestmark = requires_openssl


def _spki(cert_path: Path) -> bytes:
    return (
        x509.load_pem_x509_certificate(cert_path.read_bytes())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def assert_no_ca_key_on_disk(pki: Path) -> None:
    """No file under the PKI directory holds the private key of any CA certificate in it."""
    ca_keys = {_spki(p) for p in (pki / "ca").rglob("*.crt")}
    assert ca_keys
    leaked = [path for path, spki in pem_private_keys(pki).items() if spki in ca_keys]
    assert leaked == []
    # And nothing key-like under ca/ at all: only certificates and URIs.
    assert all(p.suffix in (".crt", ".uri") for p in (pki / "ca").rglob("*") if p.is_file())


def test_ca_on_token_signs_leaves_and_crl_that_openssl_and_grpc_accept(
    tmp_path: Path, softhsm: SoftHsm, serve: Callable[..., Server]
) -> None:
    pki = tmp_path / "pki"
    env = softhsm.env()
    created = ok(grpcpki(pki, "init-ca", "--name", "Token CA", "--intermediate", "--key-uri", uri("ca-root"), env=env))
    assert "on the PKCS#11 token, not extractable" in created.stderr
    assert sorted(p for p in tree(pki) if p.startswith("ca/")) == [
        "ca/g1/intermediate.crt", "ca/g1/intermediate.key.uri", "ca/g1/root.crt", "ca/g1/root.key.uri",
    ]
    assert (pki / "ca/g1/root.key.uri").read_text().startswith(f"pkcs11:token={TOKEN};object=ca-root;id=")

    # The keys were made on the token, and the token will never hand them out.
    private = {o["label"]: o for o in softhsm.objects() if o["class"] == "PRIVATE_KEY"}
    assert set(private) == {"ca-root", "ca-root-intermediate"}
    for attributes in private.values():
        assert attributes["SENSITIVE"] and attributes["ALWAYS_SENSITIVE"] and attributes["NEVER_EXTRACTABLE"]
        assert attributes["EXTRACTABLE"] is False

    ok(grpcpki(pki, "issue", "server", "localhost", env=env))
    ok(grpcpki(pki, "issue", "client", "web", "--spiffe-id", "spiffe://example.org/web", env=env))
    ok(grpcpki(pki, "issue", "client", "gone", "--spiffe-id", "spiffe://example.org/gone", env=env))
    gone = pki / "certs/gone/cert.pem"
    gone_pem = gone.read_bytes()
    ok(grpcpki(pki, "revoke", "gone", "--reason", "keyCompromise", env=env))
    (tmp_path / "gone.pem").write_bytes(gone_pem)

    intermediate = pki / "ca/g1/intermediate.crt"
    for leaf in ("localhost", "web"):
        result = openssl_verify(pki, pki / "certs" / leaf / "cert.pem", untrusted=intermediate)
        assert result.code == 0 and ": OK" in result.stdout, result.output
    revoked = openssl_verify(pki, tmp_path / "gone.pem", untrusted=intermediate)
    assert revoked.code != 0 and "certificate revoked" in revoked.output, revoked.output
    assert_no_ca_key_on_disk(pki)

    # A live mTLS call with the token-signed leaves (serve needs no token: it holds no CA key).
    server = serve(pki, "--name", "localhost", "--allow", "spiffe://example.org/web", env={})
    greeted = ok(grpcpki(pki, "greet", "--name", "web", "--server", f"localhost:{server.port}", env={}))
    assert "Hello world" in greeted.output

    doctor = grpcpki(pki, "doctor", env=env)
    assert doctor.code == 0, doctor.output
    inspected = ok(grpcpki(pki, "inspect", str(pki / "ca/g1/root.key.uri"), "--json", env={}))
    assert "on the PKCS#11 token 'grpcpki-test', not extractable: pkcs11:token=grpcpki-test;object=ca-root;id=" in (
        json.loads(inspected.stdout)["key_type"]
    )


def test_rotation_moves_a_file_ca_onto_the_token_with_a_cross_certificate(tmp_path: Path, softhsm: SoftHsm) -> None:
    pki = tmp_path / "pki"
    env = softhsm.env()
    ok(grpcpki(pki, "init-ca", "--name", "Moving CA", "--path-len", "2", env=env))
    ok(grpcpki(pki, "issue", "server", "localhost", env=env))
    old_root = pki / "ca/g1/root.crt"
    (tmp_path / "old-root.pem").write_bytes(old_root.read_bytes())

    begun = ok(grpcpki(pki, "ca", "rotate", "begin", "--cross-sign", "--key-uri", uri("ca-g2"), env=env))
    assert "generation 1 -> 2" in begun.stderr
    assert (pki / "ca/g2/root.key.uri").is_file() and not (pki / "ca/g2/root.key").exists()
    ok(grpcpki(pki, "renew", "--all", env=env))
    ok(grpcpki(pki, "revoke", "localhost", env=env))
    ok(grpcpki(pki, "issue", "server", "api.internal", env=env))

    # The new leaf verifies against the new root, and (through the token-signed cross
    # certificate in chain.pem) against the old root alone.
    leaf = pki / "certs/api.internal/cert.pem"
    chain = pki / "certs/api.internal/chain.pem"
    assert openssl_verify(pki, leaf).code == 0
    cross_only = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "old-root.pem"), "-untrusted", str(chain), str(leaf)],
        capture_output=True, text=True,
    )
    assert cross_only.returncode == 0, cross_only.stdout + cross_only.stderr

    ok(grpcpki(pki, "ca", "rotate", "finish", env=env))
    # The old generation's file key is the only CA key on disk, and it is no longer trusted.
    new_ca = {_spki(p) for p in (pki / "ca/g2").glob("*.crt")}
    assert not new_ca & set(pem_private_keys(pki).values())

    # From a token CA, a rotation without --key-uri would move the key into a file: refused,
    # with a command that works as printed.
    def suggested_command(result: Result) -> list[str]:
        assert_clean_error(result, "the current CA key is on the PKCS#11 token 'grpcpki-test'")
        command = shlex.split(result.stderr.split("pass --key-uri: ")[1])
        assert command[:4] == ["grpcpki", "ca", "rotate", "begin"]
        return command[1:]

    command = suggested_command(grpcpki(pki, "ca", "rotate", "begin", "--cross-sign", env=env))
    assert command == ["ca", "rotate", "begin", "--cross-sign", "--key-uri", uri("ca-g3")]
    ok(grpcpki(pki, *command, env=env))
    assert (pki / "ca/g3/root.key.uri").is_file() and (pki / "ca/g3/cross.crt").is_file()
    # The cross certificate was signed on the token by the g2 root: a g3 leaf verifies against
    # the g2 root alone through it.
    ok(grpcpki(pki, "issue", "server", "g3.internal", env=env))
    g2_only = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca/g2/root.crt"), "-untrusted",
         str(pki / "certs/g3.internal/chain.pem"), str(pki / "certs/g3.internal/cert.pem")],
        capture_output=True, text=True,
    )
    assert g2_only.returncode == 0, g2_only.stdout + g2_only.stderr

    # After an abort, ca-g3 is still on the token (kept with the archived generation): the
    # suggestion moves on to a free label, and still works as printed.
    ok(grpcpki(pki, "ca", "rotate", "abort", "--reissue", env=env))
    command = suggested_command(grpcpki(pki, "ca", "rotate", "begin", env=env))
    assert command == ["ca", "rotate", "begin", "--key-uri", uri("ca-g3-2")]
    ok(grpcpki(pki, *command, env=env))
    assert "object=ca-g3-2;" in (pki / "ca/g3/root.key.uri").read_text()
    # Only generation 1 (made before the move) ever had a key file.
    token_cas = {_spki(p) for p in pki.rglob("*.crt") if "g1" not in p.parts}
    assert len(token_cas) >= 3 and not token_cas & set(pem_private_keys(pki).values())


def test_rsa_ca_key_on_the_token(tmp_path: Path, softhsm: SoftHsm) -> None:
    pki = tmp_path / "pki"
    env = softhsm.env()
    ok(grpcpki(pki, "init-ca", "--key-type", "rsa-2048", "--key-uri", uri("rsa-root"), env=env))
    ok(grpcpki(pki, "issue", "server", "localhost", env=env))
    ok(grpcpki(pki, "revoke", "localhost", env=env))
    ok(grpcpki(pki, "issue", "server", "localhost", env=env))
    result = openssl_verify(pki, pki / "certs/localhost/cert.pem")
    assert result.code == 0, result.output
    cert = x509.load_pem_x509_certificate((pki / "certs/localhost/cert.pem").read_bytes())
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA256
    assert_no_ca_key_on_disk(pki)


def test_pin_sources_and_the_pin_is_never_shown(tmp_path: Path, softhsm: SoftHsm) -> None:
    pki = tmp_path / "pki"
    # --pin-file, after the command name, with nothing in the environment.
    ok(grpcpki(pki, "init-ca", "--key-uri", uri("ca"), "--pin-file", str(softhsm.pin_file), env=softhsm.env(pin=False)))
    # The PIN in GRPCPKI_PKCS11_PIN.
    ok(grpcpki(pki, "issue", "server", "localhost", env=softhsm.env(pin=False, GRPCPKI_PKCS11_PIN=PIN)))
    # No PIN at all, and no terminal to ask on.
    missing = grpcpki(pki, "issue", "server", "other.internal", env=softhsm.env(pin=False))
    assert_clean_error(missing, "no PIN for the PKCS#11 token 'grpcpki-test'", "GRPCPKI_PKCS11_PIN_FILE")
    wrong = grpcpki(pki, "issue", "server", "other.internal", env=softhsm.env(pin=False, GRPCPKI_PKCS11_PIN="0000"))
    assert_clean_error(wrong, "wrong PIN for the PKCS#11 token 'grpcpki-test'")
    assert not (pki / "certs/other.internal").exists()
    # Nothing grpcpki wrote holds the PIN either.
    assert all(PIN.encode() not in p.read_bytes() for p in pki.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("args", "env_change", "fragments", "code"),
    [
        pytest.param(["--key-uri", uri("ca", token="nope")], {}, ["no PKCS#11 token labelled 'nope'", "grpcpki-test"], 1,
                     id="unknown-token"),
        pytest.param(["--key-uri", uri("ca")], {"GRPCPKI_PKCS11_MODULE": None},
                     ["no PKCS#11 module", "GRPCPKI_PKCS11_MODULE"], 1, id="no-module"),
        pytest.param(["--key-uri", uri("ca")], {"GRPCPKI_PKCS11_MODULE": "/nonexistent/libp11.so"},
                     ["PKCS#11 module /nonexistent/libp11.so does not exist"], 1, id="module-path-wrong"),
        pytest.param(["--key-uri", uri("ca")], {"GRPCPKI_PKCS11_PIN_FILE": "/nonexistent/pin"},
                     ["cannot read the PIN file /nonexistent/pin"], 1, id="pin-file-missing"),
        pytest.param(["--key-uri", "pkcs11:token=grpcpki-test;object=ca?pin-value=1234"], {},
                     ["pin-value", "visible to every user"], 1, id="pin-in-uri"),
        pytest.param(["--key-uri", "pkcs11:token=grpcpki-test"], {}, ["has no object= attribute"], 1,
                     id="no-object"),
        pytest.param(["--key-uri", "file:///etc/ca.key"], {}, ["is not a PKCS#11 URI"], 1, id="not-a-uri"),
        pytest.param(["--key-uri", uri("ca"), "--encrypt"], {}, ["--encrypt", "never leaves the token"], 2,
                     id="encrypt"),
        pytest.param(["--key-uri", uri("ca"), "--key-type", "ed25519"], {}, ["--key-type"], 2, id="ed25519"),
    ],
)
def test_init_ca_token_errors_are_one_line_and_write_nothing(
    tmp_path: Path, softhsm: SoftHsm, args: list[str], env_change: dict[str, str | None], fragments: list[str],
    code: int,
) -> None:
    env = softhsm.env()
    for name, value in env_change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    pki = tmp_path / "pki"
    result = grpcpki(pki, "init-ca", *args, env=env)
    assert_clean_error(result, *fragments, code=code)
    assert tree(pki) == []
    assert [o for o in softhsm.objects() if o["class"] == "PRIVATE_KEY"] == []


def test_an_object_label_in_use_is_never_reused(tmp_path: Path, softhsm: SoftHsm) -> None:
    env = softhsm.env()
    ok(grpcpki(tmp_path / "first", "init-ca", "--key-uri", uri("shared"), env=env))
    # The root's label is taken...
    again = grpcpki(tmp_path / "second", "init-ca", "--key-uri", uri("shared"), env=env)
    assert_clean_error(again, "already holds an object labelled 'shared'", "pick another object= label")
    # ...and so is the one an intermediate would get: checked before any key is made.
    ok(grpcpki(tmp_path / "third", "init-ca", "--key-uri", uri("other-intermediate"), env=env))
    clash = grpcpki(tmp_path / "fourth", "init-ca", "--intermediate", "--key-uri", uri("other"), env=env)
    assert_clean_error(clash, "already holds an object labelled 'other-intermediate'")
    assert tree(tmp_path / "second") == [] and tree(tmp_path / "fourth") == []
    labels = sorted(str(o["label"]) for o in softhsm.objects() if o["class"] == "PRIVATE_KEY")
    assert labels == ["other-intermediate", "shared"]


def test_without_python_pkcs11_a_token_command_names_the_extra_and_others_never_load_it(
    tmp_path: Path, softhsm: SoftHsm
) -> None:
    pki = tmp_path / "pki"
    # sys.modules["pkcs11"] = None makes `import pkcs11` fail as if it were not installed.
    script = (
        "import sys, runpy; sys.modules['pkcs11'] = None; sys.argv = ['grpcpki'] + sys.argv[1:]\n"
        "runpy.run_module('grpcpki', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "--pki", str(pki), "init-ca", "--key-uri", uri("ca")],
        env=cli_env(softhsm.env()), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "python-pkcs11 is not installed" in proc.stderr and "pip install 'grpcpki[hsm]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(pki) == []

    # A PKI with file keys: --help, init-ca, issue and list never import python-pkcs11.
    probe = (
        "import sys, runpy\n"
        "pki = sys.argv[1]\n"
        "for argv in (['--help'], ['--pki', pki, 'init-ca'], ['--pki', pki, 'issue', 'server', 'localhost'],\n"
        "             ['--pki', pki, 'list']):\n"
        "    sys.argv = ['grpcpki', *argv]\n"
        "    try:\n"
        "        runpy.run_module('grpcpki', run_name='__main__')\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, argv\n"
        "print('pkcs11' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "files")], env=cli_env(), capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_pin_prompt_on_a_terminal(tmp_path: Path, softhsm: SoftHsm) -> None:
    pexpect = pytest.importorskip("pexpect", reason="pexpect is in the test extra: pip install '.[test]'")

    def spawn(*args: str) -> tuple[int, str]:
        child = pexpect.spawn(
            sys.executable, ["-m", "grpcpki", "--pki", str(tmp_path / "pki"), *args],
            cwd=str(tmp_path), env=cli_env(softhsm.env(pin=False)), encoding="utf-8", timeout=30,
        )
        child.expect(f"PIN for token '{TOKEN}': ")
        child.sendline(PIN)
        child.expect(pexpect.EOF)
        output = str(child.before)
        child.close()
        assert PIN not in output
        return int(child.exitstatus), output

    code, output = spawn("init-ca", "--key-uri", uri("ca"))
    assert code == 0, output
    # Asked once per command, before any spinner: a signing command asks when it opens the CA.
    code, output = spawn("issue", "server", "localhost")
    assert code == 0 and "issued server certificate 'localhost'" in output, output
