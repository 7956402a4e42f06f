"""A suggested fix is code the user will run: run the ones grpcpki prints, and check that nothing in
use was destroyed or repurposed (docs/failures.md#safe-fixes). Also: commands stand alone on their
own lines, and text from certificates is never read as markup or emoji.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from diagnosis_support import Run, Served, run_many, start_servers

from grpcpki.cli.console import commands_in
from grpcpki.engine import Pki

SPIFFE = "spiffe://example.org/web"


def grpcpki_commands(fix: str) -> list[list[str]]:
    commands = [shlex.split(c) for c in commands_in(fix)]
    assert commands, f"no runnable command in {fix!r}"
    assert all(c[0] == "grpcpki" for c in commands), commands
    return [c[1:] for c in commands]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("safe") / "pki"
    runs = run_many(["--pki", str(path), "init-ca"])
    assert runs[0].code == 0, runs[0].text
    for args in (["issue", "server", "localhost"], ["issue", "client", "web", "--spiffe-id", SPIFFE]):
        (run,) = run_many(["--pki", str(path), *args])
        assert run.code == 0, run.text
    return path


@pytest.fixture(scope="module")
def server(pki: Path) -> Iterator[Served]:
    started = start_servers({"localhost": ["--pki", str(pki), "--name", "localhost"]})
    yield started["localhost"]
    started["localhost"].stop()


def _serials(pki: Path) -> dict[str, str]:
    return {r.name: r.serial for r in Pki.open(pki).records()}


def test_greet_with_the_server_certificate_as_client_suggests_a_new_name(pki: Path, server: Served) -> None:
    before = _serials(pki)
    (call,) = run_many(["--pki", str(pki), "greet", "--server", f"localhost:{server.port}", "--name", "localhost", "--json"])
    reading = call.json_lines()[0]
    assert reading["kind"] == "client-cert-wrong-usage", reading
    fix = str(reading["fix"])
    assert "--replace" not in fix, fix
    commands = grpcpki_commands(fix)
    assert commands[0][:3] == ["issue", "client", "localhost-client"], commands
    for command in commands:
        (ran,) = run_many(["--pki", str(pki), *command])
        assert ran.code == 0, ran.text
    after = _serials(pki)
    # The live server certificate is untouched; the fix made a new client certificate beside it.
    assert after["localhost"] == before["localhost"] and after["web"] == before["web"]
    assert "localhost-client" in after
    (fixed,) = run_many(["--pki", str(pki), "greet", "--server", f"localhost:{server.port}", "--name", "localhost-client"])
    assert fixed.code == 0, fixed.text
    (still,) = run_many(["--pki", str(pki), "greet", "--server", f"localhost:{server.port}", "--name", "web"])
    assert still.code == 0, still.text


def test_doctor_fix_for_a_missing_name_reissues_in_place_keeping_role_and_names(pki: Path, server: Served) -> None:
    (doctor,) = run_many(["--pki", str(pki), "doctor", "localhost", "--host", "api.internal", "--json"])
    assert doctor.code == 1
    [finding] = [f for item in json.loads(doctor.stdout)["checked"] for f in item["findings"] if f["id"] == "name-mismatch"]
    [command] = grpcpki_commands(finding["fix"])
    # The inventory's own server certificate, same role, every name kept, one added.
    assert command[:3] == ["issue", "server", "localhost"] and command[-1] == "--replace", command
    before = Pki.open(pki).find("localhost")
    (ran,) = run_many(["--pki", str(pki), *command])
    assert ran.code == 0, ran.text
    after = Pki.open(pki).find("localhost")
    assert after.kind == "server" and set(before.sans) < set(after.sans) and "DNS:api.internal" in after.sans
    # The running server reloads it, and clients keep working.
    (call,) = run_many(["--pki", str(pki), "greet", "--server", f"localhost:{server.port}", "--name", "web"])
    assert call.code == 0, call.text
    (again,) = run_many(["--pki", str(pki), "doctor", "localhost", "--host", "api.internal"])
    assert again.code == 0, again.text


def test_doctor_on_a_foreign_copy_never_suggests_replace(pki: Path, tmp_path: Path) -> None:
    # The same certificate checked as loose files: not known to be the inventory's, so no --replace.
    copy = tmp_path / "server.pem"
    copy.write_bytes((pki / "certs" / "localhost" / "cert.pem").read_bytes())
    (doctor,) = run_many(["doctor", "--cert", str(copy), "--ca", str(pki / "ca.crt"), "--host", "nope.internal", "--json"])
    fixes = [f["fix"] for item in json.loads(doctor.stdout)["checked"] for f in item["findings"] if f["fix"]]
    assert fixes and not any("--replace" in f for f in fixes), fixes


def test_fix_commands_stand_alone_on_their_own_lines(pki: Path, server: Served) -> None:
    runs = run_many(
        ["--pki", str(pki), "greet", "--server", f"localhost:{server.port}", "--name", "localhost"],
        ["--pki", str(pki), "doctor", "localhost", "--host", "very-long-name.api.internal.example.org"],
    )
    greet, doctor = runs
    for run, expected in ((greet, "grpcpki issue client localhost-client"), (doctor, "grpcpki issue server localhost")):
        output = run.stdout + run.stderr
        lines = [line.strip() for line in output.splitlines()]
        commands = [line for line in lines if line.startswith(expected)]
        assert commands, output
        for command in commands:
            # A whole command on one line, no border characters, nothing after it.
            assert not re.search(r"[│┃╭╮╰╯]", command) and shlex.split(command)[0] == "grpcpki", command


def _run_with_columns(columns: int, *args: str) -> Run:
    import subprocess
    import sys

    from diagnosis_support import env

    environment = env() | {"COLUMNS": str(columns)}
    proc = subprocess.run([sys.executable, "-m", "grpcpki", *args], capture_output=True, text=True, env=environment,
                          timeout=60, stdin=subprocess.DEVNULL)
    return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def test_fix_commands_are_not_wrapped_on_a_narrow_terminal(pki: Path) -> None:
    long_host = "a-very-long-host-name-that-does-not-fit.api.internal.example.org"
    doctor = _run_with_columns(50, "--pki", str(pki), "doctor", "localhost", "--host", long_host)
    assert doctor.code == 1
    lines = [line.strip() for line in (doctor.stdout + doctor.stderr).splitlines()]
    [command] = [line for line in lines if line.startswith("grpcpki issue server localhost")]
    assert command.endswith("--replace") and f"--dns {long_host}" in command, command


def test_certificate_text_is_never_markup_or_emoji(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    import badcerts as b

    # A subject whose text looks like rich markup and emoji codes, as a foreign certificate may have.
    root = b.make_ca("Root :cat: [bold]CA[/bold]")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, ":smile: [red]api[/red] :AB:")])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(root.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(b.now()).not_valid_after(b.now() + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.example")]), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    path = tmp_path / "odd.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(root.cert_pem)
    doctor, inspect, inspect_root = run_many(
        ["--pki", str(tmp_path / "none"), "doctor", "--cert", str(path), "--ca", str(ca), "--role", "server"],
        ["--pki", str(tmp_path / "none"), "inspect", str(path)],
        ["--pki", str(tmp_path / "none"), "inspect", str(ca)],
    )
    for run in (doctor, inspect, inspect_root):
        output = run.stdout + run.stderr
        assert "Traceback" not in output, output
        assert "😄" not in output and "🐱" not in output, output
    assert ":smile: [red]api[/red] :AB:" in doctor.stdout + doctor.stderr
    assert ":smile: [red]api[/red] :AB:" in inspect.stdout
    assert "Root :cat: [bold]CA[/bold]" in inspect_root.stdout


def test_console_helpers_print_outside_text_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    from grpcpki.cli import console

    console.out.cache_clear()
    console.err.cache_clear()
    try:
        console.out().print(console.plain("AB:CD:EF:01 :AB: :cat: [bold]x[/bold]"))
        console.fix_lines("run `grpcpki renew web` then `grpcpki doctor web`", console=console.out())
    finally:
        console.out.cache_clear()
        console.err.cache_clear()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "AB:CD:EF:01 :AB: :cat: [bold]x[/bold]"
    assert [line.strip() for line in printed[1:]] == ["grpcpki renew web", "grpcpki doctor web"]
