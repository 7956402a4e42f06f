"""The misconfiguration matrix of issue #6, end to end: real `grpcpki serve` processes on
127.0.0.1, real handshakes, and for each scenario

* `greet` names the specific cause and a fix (not merely "handshake failed"), in words and in
  --json (``kind``, ``cause``, ``fix`` and the probe/doctor finding ids);
* `doctor` (static) and/or `probe` (live) find the same problem by its stable id and exit 1;
* where the server is the only side that knows (docs/failures.md#server-rejected-client), `serve` says it in
  plain words on stderr.

Each scenario is a section of docs/failures.md (the letters are the original measurement's). One server per group, all started at
once; the commands of one scenario run concurrently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from diagnosis_support import (
    Run,
    Served,
    World,
    build_world,
    free_port,
    run_many,
    start_servers,
)

SERVERS: dict[str, Callable[[World], list[str]]] = {
    "good": lambda w: [*w.server("server"), "--allow", "spiffe://example.org/web"],
    "dns-only": lambda w: w.server("server-dns-only"),
    "ip-only": lambda w: w.server("server-ip-only"),
    "cn-only": lambda w: w.server("server-cn-only"),
    "expired": lambda w: w.server("server-expired"),
    "future": lambda w: w.server("server-future"),
    "client-eku": lambda w: w.server("server-client-eku"),
    "non-ca-issuer": lambda w: w.server("server-non-ca-issuer"),
    "plaintext": lambda w: ["--plaintext"],
    # p: the classic mistake, serving cert.pem (leaf only) instead of chain.pem.
    "no-intermediate": lambda w: [
        "--cert", f"{w.ipki}/certs/localhost/cert.pem", "--key", f"{w.ipki}/certs/localhost/key.pem",
        "--ca", f"{w.ipki}/ca.crt",
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("diagnosis"))


@pytest.fixture(scope="module")
def servers(world: World) -> Iterator[dict[str, Served]]:
    started = start_servers({name: make(world) for name, make in SERVERS.items()})
    try:
        yield started
    finally:
        for served in started.values():
            served.stop()


Args = Callable[[World, str], list[str]]  # (world, "host:port") -> argv after the command name


@dataclass(frozen=True)
class Scenario:
    id: str
    server: str | None  # a SERVERS key; None: a port nothing listens on
    greet: Args
    kind: str  # greet --json "kind"
    says: tuple[str, ...]  # in greet's human output (cause and fix)
    doctor: Callable[[World], list[str]] | None = None
    doctor_ids: tuple[str, ...] = ()
    probe: Args | None = None
    probe_ids: tuple[str, ...] = ()
    probe_says: tuple[str, ...] = ()
    server_says: str | None = None  # serve's plain-words line on stderr
    host: str = "localhost"


SCENARIOS = [
    Scenario(
        "b-client-sends-no-certificate",
        "good",
        lambda w, t: ["--server", t, "--tls-only", "--ca", w.ca],
        kind="client-cert-missing",
        says=("requires a client certificate (mTLS) and this client sent none", "--name CLIENT"),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_says=("required (mTLS",),
        server_says="refused a client that sent no certificate — clients must present one issued by CN=Diag CA",
    ),
    Scenario(
        "c-client-certificate-from-another-ca",
        "good",
        lambda w, t: ["--server", t, *w.client("rogue")],
        kind="client-cert-untrusted",
        says=("CN=rogue is issued by CN=Other CA", "not in", "CA the server trusts for clients"),
        doctor=lambda w: ["doctor", *w.client("rogue"), "--role", "client"],
        doctor_ids=("chain-untrusted",),
        probe=lambda w, t: [t, *w.client("rogue")],
        probe_ids=("client-cert-rejected",),
        probe_says=("its issuer is the likely cause",),
        server_says="refused a client certificate that is not issued by a CA this server trusts (CN=Diag CA)",
    ),
    Scenario(
        "d-server-certificate-from-untrusted-ca",
        "good",
        lambda w, t: ["--server", t, *w.client("client", ca=w.other_ca)],
        kind="server-cert-untrusted",
        says=("CN=localhost is issued by CN=Diag CA", "which is not in", "CN=Other CA", "pass the CA that issued it (CN=Diag CA) with --ca"),
        doctor=lambda w: ["doctor", *w.pair("server"), "--ca", w.other_ca, "--role", "server"],
        doctor_ids=("chain-untrusted",),
        probe=lambda w, t: [t, "--ca", w.other_ca],
        probe_ids=("chain-untrusted",),
    ),
    Scenario(
        "r2-server-name-override-not-in-sans",
        "good",
        lambda w, t: ["--server", t, *w.client("client"), "--server-name", "wrong.example"],
        kind="hostname-mismatch",
        says=("checked the server certificate for 'wrong.example'", "the certificate is for DNS:localhost, IP:127.0.0.1",
              "drop --server-name"),
        doctor=lambda w: ["doctor", *w.server("server"), "--host", "wrong.example"],
        doctor_ids=("name-mismatch",),
        probe=lambda w, t: [t, "--ca", w.ca, "--server-name", "wrong.example"],
        probe_ids=("name-mismatch",),
        server_says="a client asked for wrong.example (TLS SNI), which this certificate does not cover",
    ),
    Scenario(
        "q1-dial-ip-certificate-has-dns-only",
        "dns-only",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="hostname-mismatch",
        says=("you dialed 127.0.0.1", "the certificate is for DNS:localhost", "only against IP SANs",
              "use --server-name localhost", "--ip 127.0.0.1"),
        doctor=lambda w: ["doctor", *w.server("server-dns-only"), "--host", "127.0.0.1"],
        doctor_ids=("name-mismatch",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("name-mismatch",),
        host="127.0.0.1",
    ),
    Scenario(
        "q2-dial-localhost-certificate-has-ip-only",
        "ip-only",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="hostname-mismatch",
        says=("you dialed localhost", "the certificate is for IP:127.0.0.1", "dial 127.0.0.1:", "--dns localhost"),
        doctor=lambda w: ["doctor", *w.server("server-ip-only"), "--host", "localhost"],
        doctor_ids=("name-mismatch",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("name-mismatch",),
        server_says="a client asked for localhost (TLS SNI)",
    ),
    Scenario(
        "f2-cn-only-certificate-dialed-by-ip",
        "cn-only",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="hostname-mismatch",
        says=("you dialed 127.0.0.1", "no subjectAltName, only CN=localhost", "use --server-name localhost"),
        doctor=lambda w: ["doctor", *w.server("server-cn-only"), "--role", "server"],
        doctor_ids=("cn-only",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("cn-only",),
        host="127.0.0.1",
    ),
    Scenario(
        "g-server-certificate-expired",
        "expired",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="server-cert-expired",
        says=("this client rejected the server's certificate: CN=localhost expired on", "days ago", "grpcpki renew localhost"),
        doctor=lambda w: ["doctor", *w.server("server-expired")],
        doctor_ids=("expired",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("expired",),
    ),
    Scenario(
        "h-server-certificate-not-yet-valid",
        "future",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="server-cert-not-yet-valid",
        says=("CN=localhost is not valid until", "clocks is wrong", "timedatectl"),
        doctor=lambda w: ["doctor", *w.server("server-future")],
        doctor_ids=("not-yet-valid",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("not-yet-valid",),
    ),
    Scenario(
        "i-client-certificate-expired",
        "good",
        lambda w, t: ["--server", t, *w.client("client-expired")],
        kind="client-cert-expired",
        says=("refused this client's certificate during the handshake because it has expired", "grpcpki renew web"),
        doctor=lambda w: ["doctor", *w.client("client-expired")],
        doctor_ids=("expired",),
        probe=lambda w, t: [t, *w.client("client-expired")],
        probe_ids=("expired", "client-cert-rejected"),
        server_says="refused an expired client certificate",
    ),
    Scenario(
        "client-certificate-not-yet-valid",
        "good",
        lambda w, t: ["--server", t, *w.client("client-future")],
        kind="client-cert-not-yet-valid",
        says=("because it is not valid yet", "timedatectl"),
        doctor=lambda w: ["doctor", *w.client("client-future")],
        doctor_ids=("not-yet-valid",),
        probe=lambda w, t: [t, *w.client("client-future")],
        probe_ids=("not-yet-valid", "client-cert-rejected"),
        server_says="refused a client certificate that is not valid yet",
    ),
    Scenario(
        "j-server-certificate-without-serverauth",
        "client-eku",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="server-cert-wrong-usage",
        says=("its extendedKeyUsage allows clientAuth, not serverAuth", "grpcpki issue server"),
        doctor=lambda w: ["doctor", *w.server("server-client-eku"), "--role", "server"],
        doctor_ids=("wrong-eku",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("wrong-eku",),
    ),
    Scenario(
        "k-client-certificate-without-clientauth",
        "good",
        lambda w, t: ["--server", t, *w.client("client-server-eku")],
        kind="client-cert-wrong-usage",
        says=("because it is not made for clients", "allows serverAuth, not clientAuth", "grpcpki issue client"),
        doctor=lambda w: ["doctor", *w.client("client-server-eku"), "--role", "client"],
        doctor_ids=("wrong-eku",),
        probe=lambda w, t: [t, *w.client("client-server-eku")],
        probe_ids=("wrong-eku", "client-cert-rejected"),
        server_says="refused a certificate that is not made for clients",
    ),
    Scenario(
        "l-tls-client-plaintext-server",
        "plaintext",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="server-not-tls",
        says=("speaks plaintext HTTP/2 (h2c), not TLS", "dial it with --plaintext"),
        probe=lambda w, t: [t],
        probe_ids=("plaintext-server",),
    ),
    Scenario(
        "m-plaintext-client-tls-server",
        "good",
        lambda w, t: ["--server", t, "--plaintext"],
        kind="client-plaintext-server-tls",
        says=("speaks TLS (TLSv1.3, ALPN h2) and hung up on this plaintext client", "requires a client certificate",
              "drop --plaintext"),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_says=("TLSv1.3", "ALPN h2"),
        server_says="refused a client that does not speak TLS",
    ),
    Scenario(
        "o3-leaf-signed-by-non-ca",
        "non-ca-issuer",
        lambda w, t: ["--server", t, *w.client("client")],
        kind="server-cert-bad-issuer",
        says=("CN=localhost is issued by CN=not-a-ca, which is not a CA",),
        doctor=lambda w: ["doctor", *w.server("server-non-ca-issuer"), "--role", "server"],
        doctor_ids=("issuer-not-ca",),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("issuer-not-ca",),
    ),
    Scenario(
        "p-server-omits-intermediate",
        "no-intermediate",
        lambda w, t: ["--pki", w.ipki, "--server", t, "--name", "web"],
        kind="server-missing-intermediate",
        says=("lacks the intermediate CN=Inter CA Issuing CA", "chain.pem, not cert.pem"),
        doctor=lambda w: [
            "--pki", w.ipki, "doctor", "--cert", f"{w.ipki}/certs/localhost/cert.pem",
            "--key", f"{w.ipki}/certs/localhost/key.pem",
        ],
        doctor_ids=("missing-intermediate",),
        probe=lambda w, t: ["--pki", w.ipki, t],
        probe_ids=("missing-intermediate",),
    ),
    Scenario(
        "identity-not-in-allow-list",
        "good",
        lambda w, t: ["--server", t, *w.client("intruder")],
        kind="permission-denied",
        says=("does not allow the identity spiffe://example.org/intruder", "--allow spiffe://example.org/intruder"),
        # The handshake is fine: the probe's mutual handshake is accepted (exit 0).
        probe=lambda w, t: [t, *w.client("intruder")],
        probe_says=("the server accepted",),
        server_says="spiffe://example.org/intruder (",
    ),
    Scenario(
        "z-nothing-listening",
        None,
        lambda w, t: ["--server", t, *w.client("client")],
        kind="connection-refused",
        says=("nothing is listening on", "start the server"),
        probe=lambda w, t: [t, "--ca", w.ca],
        probe_ids=("connection-refused",),
        host="127.0.0.1",
    ),
]


def _ids(run: Run) -> set[str]:
    data = json.loads(run.stdout)
    if "checked" in data:
        return {f["id"] for item in data["checked"] for f in item["findings"]}
    return {f["id"] for f in data["findings"]}


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(case: Scenario, world: World, servers: dict[str, Served]) -> None:
    served = servers[case.server] if case.server else None
    port = served.port if served else free_port()
    target = f"{case.host}:{port}"
    greet = ["greet", "--timeout", "5s", *case.greet(world, target)]
    commands: list[list[str]] = [greet, [*greet, "--json"]]
    if case.doctor:
        commands += [case.doctor(world), [*case.doctor(world), "--json"]]
    if case.probe:
        probe = case.probe(world, target)
        # --pki before the command name stays in front of "probe".
        split = probe.index(target)
        commands += [[*probe[:split], "probe", *probe[split:]], [*probe[:split], "probe", *probe[split:], "--json"]]
    runs = run_many(*commands)
    human, as_json = runs[0], runs[1]

    # greet: the specific cause and a fix, in words (stderr) and for scripts (--json).
    assert human.code == 1, human.text
    assert "Traceback" not in human.text
    for fragment in case.says:
        assert fragment in human.text, f"{fragment!r} not in: {human.text}"
    call = as_json.json_lines()[0]
    assert call["kind"] == case.kind, call
    assert call["cause"] and call["fix"], call
    assert "handshake failed" not in str(call["cause"]).lower()

    rest = runs[2:]
    if case.doctor:
        text, data = rest[0], rest[1]
        rest = rest[2:]
        assert text.code == 1 and data.code == 1, text.text
        assert set(case.doctor_ids) <= _ids(data), data.stdout
        assert "fix:" in text.text
        assert set(case.doctor_ids) <= set(call.get("findings", [])) | _ids(data)
    if case.probe:
        text, data = rest[0], rest[1]
        expected_exit = 1 if case.probe_ids else 0
        assert text.code == expected_exit and data.code == expected_exit, text.text
        assert set(case.probe_ids) <= _ids(data), data.stdout
        for fragment in case.probe_says:
            assert fragment in text.text, f"{fragment!r} not in: {text.text}"
        # The ids greet based its reading on are the probe's and doctor's own.
        if case.probe_ids and case.kind != "permission-denied":
            assert set(case.probe_ids) & set(call.get("findings", [])), call
    if case.server_says:
        assert served is not None
        assert case.server_says in served.wait_for(case.server_says), served.stderr()


def test_cn_only_server_works_by_dns_name_but_doctor_flags_it(world: World, servers: dict[str, Served]) -> None:
    # docs/failures.md#hostname-mismatch: gRPC falls back to the CN for DNS targets, so this call succeeds; Go
    # clients and IP targets do not, which is why doctor calls it an error.
    port = servers["cn-only"].port
    ok, doctor = run_many(
        ["greet", "--server", f"localhost:{port}", *world.client("client")],
        ["doctor", *world.server("server-cn-only"), "--role", "server", "--host", "localhost"],
    )
    assert ok.code == 0 and ok.stdout == "Hello world\n", ok.text
    assert doctor.code == 1 and "cn-only" in doctor.text and "Go clients and IP targets ignore the CN" in doctor.text


def test_q1_fix_works(world: World, servers: dict[str, Served]) -> None:
    (fixed,) = run_many(
        ["greet", "--server", f"127.0.0.1:{servers['dns-only'].port}", *world.client("client"), "--server-name", "localhost"]
    )
    assert fixed.code == 0, fixed.text


def test_key_certificate_mismatch_at_serve_start(world: World) -> None:
    # docs/failures.md#key-mismatch-at-bind: grpc itself would say 'Failed to bind to address'.
    serve, doctor = run_many(
        ["serve", "--listen", "127.0.0.1:0", "--cert", world.cert("server"), "--key", world.key("client"), "--ca", world.ca],
        ["doctor", "--cert", world.cert("server"), "--key", world.key("client"), "--ca", world.ca, "--json"],
    )
    assert serve.code == 1 and "Traceback" not in serve.text
    lines = [line for line in serve.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "does not belong to the certificate" in lines[0], serve.stderr
    assert "Failed to bind" not in serve.text
    assert doctor.code == 1 and "key-mismatch" in _ids(doctor)


def test_greet_diagnoses_once_per_distinct_failure(world: World, servers: dict[str, Served]) -> None:
    # Three identical failures: one probe, so the server sees the three calls' handshakes plus
    # one probe's (anonymous + mutual), not three probes' worth.
    served = servers["good"]
    before = served.stderr().count("refused an expired client certificate")
    (run,) = run_many(
        ["greet", "--server", f"localhost:{served.port}", *world.client("client-expired"), "--count", "3",
         "--interval", "0s", "--new-connection", "--json"]
    )
    calls = run.json_lines()[:-1]
    assert [c["kind"] for c in calls] == ["client-cert-expired"] * 3

    def count() -> int:
        return served.stderr().count("refused an expired client certificate") - before

    deadline = time.monotonic() + 5
    while count() < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything more would arrive by now
    assert count() == 4, served.stderr()  # 3 calls + 1 probe (its mutual handshake)


def test_verbose_keeps_the_raw_grpc_error_and_shows_the_evidence(world: World, servers: dict[str, Served]) -> None:
    (run,) = run_many(["greet", "--server", f"localhost:{servers['good'].port}", *world.client("rogue"), "--verbose"])
    assert run.code == 1
    assert "grpc: UNAVAILABLE:failed to connect to all addresses" in run.text and "Socket closed" in run.text
    assert "found: error chain-untrusted:" in run.text
