"""`grpcpki serve` and `grpcpki greet` end to end: real processes, real handshakes on 127.0.0.1.

Each scenario asserts the exit code and the words a user reads. The expected client-side
texts follow the project's catalogue, docs/failures.md.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from greeter_support import Files, Served, cli_env, run_cli, served_serial


def greet(server: Served | str, *args: str) -> subprocess.CompletedProcess[str]:
    target = server.address if isinstance(server, Served) else server
    return run_cli("greet", "--server", target, "--interval", "0s", "--timeout", "5s", *args)


def one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- success and identity


def test_mtls_success_shows_reply_and_identities(mtls_server: Served, files: Files) -> None:
    result = greet(mtls_server, *files.client_args(), "--to", "Alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello Alice\n"
    err = one_line(result.stderr)
    assert "as spiffe://example.org/web" in err  # who we are (from our certificate)
    assert "the server saw you as spiffe://example.org/web" in err  # who the server says we are
    assert "OK SayHello('Alice') from spiffe://example.org/web" in mtls_server.stderr()


def test_announcement_names_mode_address_and_trusted_ca(mtls_server: Served, files: Files) -> None:
    announce = mtls_server.announce
    assert announce["mode"] == "mtls"
    assert announce["address"] == f"127.0.0.1:{mtls_server.port}"
    assert [ca["subject"] for ca in announce["trusted_cas"]] == ["CN=Greeter Test CA"]  # type: ignore[index, union-attr]
    assert announce["certificate"]["serial"] == files.serials["server"]  # type: ignore[index]
    assert announce["allow"] == ["spiffe://example.org/web"]
    banner = one_line(mtls_server.stderr())
    assert f"serving helloworld.Greeter on 127.0.0.1:{mtls_server.port}" in banner
    assert "mTLS (client certificate required)" in banner
    assert "trusting clients from CN=Greeter Test CA" in banner


def test_json_loop_reports_each_call_and_summary(mtls_server: Served, files: Files) -> None:
    result = greet(mtls_server, *files.client_args(), "--count", "3", "--new-connection", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    calls, summary = lines[:-1], lines[-1]
    assert [c["seq"] for c in calls] == [1, 2, 3]
    assert all(c["ok"] and c["status"] == "OK" and c["reply"] == "Hello world" for c in calls)
    assert all(c["identity_seen_by_server"] == "spiffe://example.org/web" for c in calls)
    assert all(c["latency_ms"] > 0 for c in calls)
    assert summary == {
        "summary": True,
        "target": mtls_server.address,
        "mode": "mtls",
        "calls": 3,
        "ok": 3,
        "failed": 0,
        "latency_ms_max": summary["latency_ms_max"],
    }


def test_dial_ip_with_server_name_override(mtls_server: Served, files: Files) -> None:
    result = greet(f"127.0.0.1:{mtls_server.port}", *files.client_args(), "--server-name", "localhost")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world\n"


# --------------------------------------------------------------------------- handshake failures


def test_client_cert_from_another_ca(mtls_server: Served, files: Files) -> None:
    result = greet(mtls_server, *files.client_args("rogue"))
    assert result.returncode == 1
    assert result.stdout == ""
    err = one_line(result.stderr)
    assert "error: UNAVAILABLE" in err
    # greet's live look (probe + doctor) names the issuer the client-side text cannot.
    assert "the server refused this client's certificate during the handshake" in err
    assert "CN=rogue is issued by CN=Some Other CA" in err
    assert "grpc said: Socket closed" in err
    assert "Traceback" not in result.stderr
    # Only the server's log has the cause (docs/failures.md#server-rejected-client).
    assert "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate" in mtls_server.stderr()


def test_no_client_certificate(mtls_server: Served, files: Files) -> None:
    result = greet(mtls_server, "--tls-only", "--ca", str(files.ca))
    assert result.returncode == 1
    err = one_line(result.stderr)
    assert "error: UNAVAILABLE" in err
    assert "requires a client certificate (mTLS) and this client sent none" in err
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in mtls_server.stderr()  # docs/failures.md#client-cert-missing


def test_client_does_not_trust_server_ca(mtls_server: Served, files: Files) -> None:
    result = greet(mtls_server, *files.client_args(ca=files.other_ca), "--json")
    assert result.returncode == 1
    call = json.loads(result.stdout.splitlines()[0])
    assert call["status"] == "UNAVAILABLE"
    assert call["kind"] == "server-cert-untrusted"
    assert "CN=localhost is issued by CN=Greeter Test CA, which is not in the CA bundle" in call["cause"]
    assert "chain-untrusted" in call["findings"]
    assert "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate" in call["details"]


def test_dialed_name_not_in_server_san(serve: type[Served], files: Files) -> None:
    server = serve(*files.server_args("otherhost"))  # SAN DNS:other.example only
    result = greet(server, *files.client_args())
    assert result.returncode == 1
    err = one_line(result.stderr)
    assert "error: UNAVAILABLE" in err
    assert "you dialed localhost; the certificate is for DNS:other.example" in err
    assert "--server-name" in err
    assert "Hostname Verification Check failed" in err
    # Row e: the server's SNI callback names the dialed host even at GRPC_VERBOSITY=ERROR.
    assert "No match found for server name: localhost" in server.stderr()
    # And the fix works: check the certificate for the name it has.
    fixed = greet(server, *files.client_args(), "--server-name", "other.example")
    assert fixed.returncode == 0, fixed.stderr


def test_identity_not_in_allow_list(mtls_server: Served, files: Files) -> None:
    result = greet(mtls_server, *files.client_args("intruder"))
    assert result.returncode == 1
    err = one_line(result.stderr)
    assert "error: PERMISSION_DENIED" in err
    assert "identity spiffe://example.org/intruder is not allowed" in err
    assert "serve --allow" in err
    assert "PERMISSION_DENIED SayHello('world') from spiffe://example.org/intruder" in one_line(mtls_server.stderr())


def test_plaintext_client_to_tls_server(mtls_server: Served) -> None:
    result = greet(mtls_server, "--plaintext")
    assert result.returncode == 1
    assert "speaks TLS (TLSv1.3, ALPN h2) and hung up on this plaintext client" in one_line(result.stderr)


def test_connection_refused(files: Files) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = greet(f"127.0.0.1:{port}", *files.client_args(), "--count", "2")
    assert result.returncode == 1
    err = one_line(result.stderr)
    assert f"nothing is listening on 127.0.0.1:{port}" in err
    assert "2 calls: 0 OK, 2 failed" in err


def test_tls_and_plaintext_modes(serve: type[Served], files: Files) -> None:
    tls = serve("--cert", str(files.cert("server")), "--key", str(files.key("server")), "--tls")
    assert tls.announce["mode"] == "tls"
    ok = greet(tls, "--tls-only", "--ca", str(files.ca))
    assert ok.returncode == 0, ok.stderr
    assert "the server saw you as anonymous (no client certificate)" in one_line(ok.stderr)

    plain = serve("--plaintext")
    ok = greet(plain, "--plaintext")
    assert ok.returncode == 0, ok.stderr
    # A TLS client meeting a plaintext server (docs/failures.md#server-not-tls).
    wrong = greet(plain, *files.client_args())
    assert wrong.returncode == 1
    assert "speaks plaintext HTTP/2 (h2c), not TLS" in one_line(wrong.stderr)


# --------------------------------------------------------------------------- start-up errors


def test_key_cert_mismatch_at_start(files: Files) -> None:
    result = run_cli(
        "serve", "--listen", "127.0.0.1:0",
        "--cert", str(files.cert("server")), "--key", str(files.key("server2")), "--ca", str(files.ca),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "the private key does not belong to the certificate CN=localhost" in lines[0]
    assert "Failed to bind" not in result.stderr and "Traceback" not in result.stderr


def test_port_in_use(mtls_server: Served, files: Files) -> None:
    result = run_cli("serve", "--listen", f"127.0.0.1:{mtls_server.port}", *files.server_args())
    assert result.returncode == 1
    assert f"error: port {mtls_server.port} on 127.0.0.1 is already in use" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--tls", "--plaintext"], "choose one of --tls and --plaintext"),
        (["serve", "--cert", "a.crt", "--key", "a.key"], "mTLS needs --ca"),
        (["serve", "--cert", "a.crt"], "--cert and --key go together"),
        (["serve", "--plaintext", "--cert", "a.crt"], "--plaintext uses no certificates"),
        (["serve", "--tls", "--allow", "x", "--cert", "a", "--key", "b"], "--allow needs client certificates"),
        (["serve", "--name", "x", "--cert", "a.crt"], "already gives the certificate"),
        (["greet", "--tls-only", "--cert", "a", "--key", "b"], "--tls-only sends no client certificate"),
        (["greet", "--ca", "ca.crt"], "mTLS needs a client certificate"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_conflicting_flags_are_usage_errors(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in one_line(result.stderr)


def test_missing_file_is_one_line(files: Files) -> None:
    result = greet("localhost:1", "--cert", str(files.dir / "nope.crt"), "--key", str(files.key("client")))
    assert result.returncode == 1
    assert "error: client certificate file" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- lifecycle


def test_sigterm_lets_in_flight_call_finish(serve: type[Served], files: Files) -> None:
    server = serve(*files.server_args(), "--delay", "1500ms", "--grace", "5s")
    caller = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "greet", "--server", server.address, *files.client_args()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )
    try:
        assert caller.stderr is not None
        assert caller.stderr.readline().startswith("greeting ")  # printed just before the call
        time.sleep(0.5)  # handshake done, SayHello sleeping in the server (--delay 1.5)
        code, _, stderr = server.stop(signal.SIGTERM)
        out, rest = caller.communicate(timeout=15)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert code == 0, stderr
    assert "SIGTERM received: finishing in-flight calls" in stderr
    assert "OK SayHello('world') from spiffe://example.org/web" in stderr  # logged after SIGTERM
    assert stderr.rstrip().endswith("stopped")
    assert "Traceback" not in stderr
    assert caller.returncode == 0, rest
    assert out == "Hello world\n"


def test_sigint_exits_zero(serve: type[Served]) -> None:
    server = serve("--plaintext")
    code, _, stderr = server.stop(signal.SIGINT)
    assert code == 0
    assert "SIGINT received" in stderr


def test_hot_reload_new_connection_sees_new_certificate(serve: type[Served], files: Files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("server", "server2", "client"):
        shutil.copy(files.cert(name), tmp_path / f"{name}.crt")
        shutil.copy(files.key(name), tmp_path / f"{name}.key")
    shutil.copy(files.ca, tmp_path / "ca.crt")
    live = Files(tmp_path, files.serials)
    server = serve("--cert", str(live.cert("server")), "--key", str(live.key("server")), "--ca", str(live.ca))
    assert served_serial(server.port, live) == files.serials["server"]

    # Half-way through a rotation (new cert, old key) nothing is loaded: the old pair keeps serving.
    shutil.copy(files.cert("server2"), live.cert("server"))
    assert served_serial(server.port, live) == files.serials["server"]
    logged = server.stderr_with("were not loaded: ", "does not belong to the certificate")
    assert "were not loaded: " in logged and "does not belong to the certificate" in logged

    # The key arrives: the next new connection gets the new certificate, no restart.
    shutil.copy(files.key("server2"), live.key("server"))
    assert served_serial(server.port, live) == files.serials["server2"]
    reloaded = f"reloaded certificate CN=localhost serial {files.serials['server2'][:16]}"
    assert reloaded in server.stderr_with(reloaded)
    result = greet(server, *live.client_args())
    assert result.returncode == 0, result.stderr
    code, _, _ = server.stop()
    assert code == 0


# --------------------------------------------------------------------------- with a PKI directory


def test_name_resolves_material_from_pki(serve: type[Served], tmp_path) -> None:  # type: ignore[no-untyped-def]
    pki = str(tmp_path / "pki")
    for args in (
        ["init-ca", "--name", "Named CA"],
        ["issue", "server", "localhost"],
        ["issue", "client", "web", "--spiffe-id", "spiffe://example.org/web"],
    ):
        made = run_cli("--pki", pki, *args)
        assert made.returncode == 0, made.stderr
    server = serve("--pki", pki, "--name", "localhost")
    assert server.announce["trusted_cas"][0]["subject"] == "CN=Named CA"  # type: ignore[index]
    result = greet(server, "--pki", pki, "--name", "web")
    assert result.returncode == 0, result.stderr
    assert "the server saw you as spiffe://example.org/web" in one_line(result.stderr)


# --------------------------------------------------------------------------- openssl interop


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_s_client_sees_h2_and_needs_client_cert(mtls_server: Served, files: Files) -> None:
    base = [
        "openssl", "s_client", "-connect", f"127.0.0.1:{mtls_server.port}", "-alpn", "h2",
        "-servername", "localhost", "-CAfile", str(files.ca), "-verify_return_error",
    ]
    ok = subprocess.run(
        [*base, "-cert", str(files.cert("client")), "-key", str(files.key("client"))],
        # The server's HTTP/2 SETTINGS frame may be echoed to stdout: binary.
        input="", capture_output=True, text=True, errors="replace", timeout=10,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ALPN protocol: h2" in ok.stdout
    assert "Verify return code: 0 (ok)" in ok.stdout
    assert "subject=CN = localhost" in ok.stdout

    # Without a client certificate the TLS 1.3 server rejects it after the client's Finished;
    # keep reading (-ign_eof) to see how: grpc drops the TCP connection without a TLS alert,
    # which is exactly why a grpc client only reports "Socket closed" (docs/failures.md#client-cert-missing).
    refused = subprocess.run(
        [*base, "-ign_eof"], input="", capture_output=True, text=True, errors="replace", timeout=10,
    )
    assert refused.returncode != 0
    assert "unexpected eof while reading" in refused.stderr
