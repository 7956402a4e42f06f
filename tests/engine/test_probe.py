"""grpcpki.diagnosis.probe against real servers on 127.0.0.1: stdlib ssl servers and one grpcio server."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import badcerts as b
import pytest

from grpcpki.engine import CA, Role
from grpcpki.diagnosis.findings import FINDINGS, Severity
from grpcpki.engine.errors import ProbeError
from grpcpki.diagnosis.probe import PROBE_FINDINGS, ProbeResult, probe
from grpcpki.diagnosis.wire import EMPTY_SETTINGS

Handler = Callable[[socket.socket], None]


@contextmanager
def serve(handler: Handler) -> Iterator[int]:
    """Accept connections on 127.0.0.1:<ephemeral> in a thread, one handler call each."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(3)
            threading.Thread(target=_run, args=(handler, conn), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def _run(handler: Handler, conn: socket.socket) -> None:
    try:
        handler(conn)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def tls_handler(context: ssl.SSLContext, *, answer_settings: bool = True) -> Handler:
    """A TLS server that, like gRPC, sends its SETTINGS as soon as the handshake is done."""

    def handle(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            if answer_settings:
                tls.sendall(EMPTY_SETTINGS)
            while tls.recv(4096):
                pass

    return handle


def h2c_handler(conn: socket.socket) -> None:
    data = conn.recv(4096)
    if data.startswith(b"PRI * HTTP/2.0"):
        conn.sendall(EMPTY_SETTINGS)
    # A ClientHello is not a preface: a gRPC h2c server hangs up (GOAWAY) -> WRONG_VERSION_NUMBER.
    else:
        conn.sendall(b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01")


def http1_handler(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@dataclass(frozen=True)
class Pki:
    ca: CA
    server_chain: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    tmp: Path

    def write(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def server_context(
        self,
        verify: ssl.VerifyMode = ssl.CERT_NONE,
        *,
        alpn: bool = True,
        max_version: ssl.TLSVersion | None = None,
        chain: Path | None = None,
        key: Path | None = None,
    ) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain or self.server_chain, key or self.server_key)
        context.verify_mode = verify
        if verify != ssl.CERT_NONE:
            context.load_verify_locations(cadata=self.ca.root_pem.decode())
        if alpn:
            context.set_alpn_protocols(["h2"])
        if max_version:
            context.maximum_version = max_version
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("probe")
    ca = CA.create("Probe CA")
    inter = ca.create_intermediate("Probe Issuing CA")
    server = inter.issue(Role.SERVER, "localhost")
    client = inter.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    files = {
        "server.pem": server.chain_pem,
        "server.key": server.key_pem,
        "client.pem": client.chain_pem,
        "client.key": client.key_pem,
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        (tmp / name).chmod(0o600)
    return Pki(ca, tmp / "server.pem", tmp / "server.key", tmp / "client.pem", tmp / "client.key", tmp)


def ids(result: ProbeResult) -> dict[str, Severity]:
    return {f.id: f.severity for f in result.findings}


def run(port: int, pki: Pki | None = None, **kwargs: object) -> ProbeResult:
    if pki is not None:
        kwargs.setdefault("ca_pem", pki.ca.root_pem)
    return probe("127.0.0.1", port, timeout=2.0, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- server modes


def test_tls_only_server(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context())) as port:
        result = run(port, pki)
    assert result.ok and result.findings == ()
    assert result.tls and result.tls_version == "TLSv1.3" and result.alpn == "h2" and result.http2
    assert result.client_cert_requested is False and result.client_cert_required is False
    assert result.verified is True and result.sni is None  # no SNI for IP targets, like gRPC
    assert result.chain_complete and [c.common_name for c in result.chain] == ["localhost", "Probe Issuing CA"]


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_server_requires_client_cert(pki: Pki, max_version: ssl.TLSVersion) -> None:
    with serve(tls_handler(pki.server_context(ssl.CERT_REQUIRED, max_version=max_version))) as port:
        result = run(port, pki)
    assert ids(result) == {"server-requires-client-cert": Severity.INFO}
    assert result.client_cert_requested and result.client_cert_required
    assert len(result.chain) == 2 and result.verified  # the chain is read even when TLS 1.2 fails


def test_server_requests_optional_client_cert(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context(ssl.CERT_OPTIONAL))) as port:
        result = run(port, pki)
    assert ids(result) == {"server-requests-client-cert": Severity.INFO}
    assert result.client_cert_requested and result.client_cert_required is False


def test_no_alpn(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context(alpn=False))) as port:
        result = run(port, pki)
    assert ids(result) == {"no-alpn-h2": Severity.ERROR} and result.alpn is None


def test_h2c_plaintext_server() -> None:
    with serve(h2c_handler) as port:
        result = run(port)
    assert ids(result) == {"plaintext-server": Severity.ERROR}
    assert "h2c" in result.findings[0].message and result.tls is False


def test_http1_plaintext_server() -> None:
    with serve(http1_handler) as port:
        result = run(port)
    assert ids(result) == {"not-tls": Severity.ERROR}


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = run(port)
    assert ids(result) == {"connection-refused": Severity.ERROR} and not result.tcp_connected


def test_silent_port_times_out() -> None:
    def silent(conn: socket.socket) -> None:
        conn.recv(4096)
        threading.Event().wait(1.0)

    with serve(silent) as port:
        result = probe("127.0.0.1", port, timeout=0.3)
    assert ids(result) == {"handshake-timeout": Severity.ERROR}


# --------------------------------------------------------------------------- the presented chain


def test_name_mismatch_against_override(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context())) as port:
        result = run(port, pki, server_name="api.example.com")
    assert result.sni == "api.example.com" and result.verified is False
    [finding] = [f for f in result.findings if f.id == "name-mismatch"]
    assert "api.example.com" in finding.message and "DNS:localhost" in finding.message


def test_dialing_ip_with_dns_only_san(pki: Pki) -> None:
    root = b.make_ca()
    leaf = b.make_leaf(root, sans=["DNS:localhost"])
    context = pki.server_context(
        chain=pki.write("dnsonly.pem", leaf.cert_pem), key=pki.write("dnsonly.key", leaf.key_pem)
    )
    with serve(tls_handler(context)) as port:
        result = run(port, ca_pem=root.cert_pem)
    assert "name-mismatch" in ids(result)


def test_untrusted_server_ca(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context())) as port:
        result = run(port, ca_pem=b.make_ca("Some Other CA").cert_pem)
    assert ids(result) == {"chain-untrusted": Severity.ERROR} and result.verified is False


def test_server_omits_intermediate(pki: Pki) -> None:
    leaf_only = pki.write(
        "leaf-only.pem",
        pki.server_chain.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n",
    )
    with serve(tls_handler(pki.server_context(chain=leaf_only))) as port:
        result = run(port, pki)
    assert ids(result) == {"chain-untrusted": Severity.ERROR} and len(result.chain) == 1


def test_expired_server_cert(pki: Pki) -> None:
    old = pki.ca.issue(Role.SERVER, "localhost", days=10, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    context = pki.server_context(chain=pki.write("old.pem", old.chain_pem), key=pki.write("old.key", old.key_pem))
    with serve(tls_handler(context)) as port:
        result = run(port, pki)
    assert ids(result) == {"expired": Severity.ERROR}


# --------------------------------------------------------------------------- mutual TLS


def test_mutual_ok(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context(ssl.CERT_REQUIRED))) as port:
        result = run(port, pki, client_cert_path=pki.client_cert, client_key_path=pki.client_key)
    assert result.mutual_ok is True and not result.findings == () and result.ok


def _client_material(pki: Pki, name: str, leaf: b.Material) -> dict[str, object]:
    return {
        "client_cert_path": pki.write(f"{name}.pem", leaf.cert_pem),
        "client_key_path": pki.write(f"{name}.key", leaf.key_pem),
    }


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
@pytest.mark.parametrize(
    ("make_client", "expected"),
    [
        (
            lambda pki: b.make_leaf(b.make_ca("Stranger CA"), "web", eku=[b.CLIENT_AUTH]),
            "client-cert-rejected-unknown-ca",
        ),
        (lambda pki: None, "client-cert-rejected-expired"),
        (lambda pki: "serverAuth", "client-cert-rejected-purpose"),
    ],
    ids=["other CA (c)", "expired (i)", "serverAuth only (k)"],
)
def test_mutual_rejections(
    pki: Pki, max_version: ssl.TLSVersion, make_client: Callable[[Pki], object], expected: str
) -> None:
    made = make_client(pki)
    if isinstance(made, b.Material):
        material = _client_material(pki, "stranger", made)
    else:
        # Issued by the trusted CA, but expired or with the wrong EKU.
        now = dt.datetime.now(dt.UTC)
        leaf = (
            pki.ca.issue(Role.CLIENT, "old-web", days=5, now=now - dt.timedelta(days=30))
            if made is None
            else pki.ca.issue(Role.SERVER, "not-a-client", sans=["DNS:not-a-client.example"])
        )
        material = {
            "client_cert_path": pki.write(f"{expected}.pem", leaf.chain_pem),
            "client_key_path": pki.write(f"{expected}.key", leaf.key_pem),
        }
    with serve(tls_handler(pki.server_context(ssl.CERT_REQUIRED, max_version=max_version))) as port:
        result = run(port, pki, **material)
    assert expected in ids(result), result.findings
    assert result.mutual_ok is False


def test_client_cert_unused(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context())) as port:
        result = run(port, pki, client_cert_path=pki.client_cert, client_key_path=pki.client_key)
    assert ids(result) == {"client-cert-unused": Severity.INFO} and result.mutual_ok


def test_client_key_mismatch_is_local(pki: Pki) -> None:
    with serve(tls_handler(pki.server_context(ssl.CERT_REQUIRED))) as port:
        result = run(port, pki, client_cert_path=pki.client_cert, client_key_path=pki.server_key)
    assert "key-mismatch" in ids(result) and result.mutual_ok is False


def test_client_material_unusable(pki: Pki) -> None:
    # A key the doctor accepts but OpenSSL cannot pair: an unreadable certificate file for ssl.
    bad = pki.write("notacert.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with serve(tls_handler(pki.server_context(ssl.CERT_REQUIRED))) as port:
        result = run(port, pki, client_cert_path=bad, client_key_path=pki.client_key)
    assert "client-material-unusable" in ids(result) or "not-pem" in ids(result)
    assert result.mutual_ok is False


# --------------------------------------------------------------------------- a real gRPC server


def test_real_grpc_server_requiring_client_certs(pki: Pki) -> None:
    grpc = pytest.importorskip("grpc")
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_chain.read_bytes())],
        root_certificates=pki.ca.root_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    plain_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        anonymous = run(port, pki)
        mutual = run(port, pki, client_cert_path=pki.client_cert, client_key_path=pki.client_key)
        stranger = b.make_leaf(b.make_ca("Stranger CA"), "web", eku=[b.CLIENT_AUTH])
        rejected = run(port, pki, **_client_material(pki, "grpc-stranger", stranger))
        plaintext = run(plain_port)
    finally:
        server.stop(None)
    assert ids(anonymous) == {"server-requires-client-cert": Severity.INFO}
    assert anonymous.alpn == "h2" and anonymous.verified
    assert mutual.mutual_ok is True and mutual.ok
    # gRPC C-core hangs up without an alert (docs/failures.md#server-rejected-client) and lists no acceptable CAs, so the
    # probe can only say the certificate was rejected, and point at its issuer.
    [finding] = [f for f in rejected.findings if f.id == "client-cert-rejected"]
    assert "closed the connection" in finding.message and "issuer is the likely cause" in finding.message
    assert ids(plaintext) == {"plaintext-server": Severity.ERROR}


# --------------------------------------------------------------------------- contract


def test_bad_arguments_raise_probe_error() -> None:
    with pytest.raises(ProbeError):
        probe("127.0.0.1", 0)
    with pytest.raises(ProbeError):
        probe("127.0.0.1", 443, client_cert_path="c.pem")


def test_probe_ids_do_not_clash_with_doctor_ids() -> None:
    assert set(PROBE_FINDINGS) <= set(FINDINGS)


def test_to_dict_is_json_ready(pki: Pki) -> None:
    import json

    with serve(tls_handler(pki.server_context(ssl.CERT_REQUIRED))) as port:
        result = run(port, pki)
    data = json.loads(json.dumps(result.to_dict(), default=str))
    assert data["client_cert_required"] is True and data["chain"][0]["common_name"] == "localhost"


def _certificate_request(ca_names: list[bytes], *, tls13: bool) -> bytes:
    names = b"".join(len(n).to_bytes(2, "big") + n for n in ca_names)
    names = len(names).to_bytes(2, "big") + names
    if tls13:
        sigalgs = b"\x00\x0d\x00\x04\x00\x02\x04\x03"
        extensions = sigalgs + b"\x00\x2f" + len(names).to_bytes(2, "big") + names
        body = b"\x00" + len(extensions).to_bytes(2, "big") + extensions
    else:
        body = b"\x01\x40" + b"\x00\x02\x04\x03" + names
    return b"\x0d" + len(body).to_bytes(3, "big") + body


@pytest.mark.parametrize("tls13", [True, False], ids=["tls1.3", "tls1.2"])
def test_certificate_request_ca_names_are_read(pki: Pki, tls13: bool) -> None:
    # Go and nginx servers list their client CAs; when the client's issuer is not among them the
    # probe names both sides even if the server hangs up without an alert.
    from grpcpki.diagnosis import probe as probe_module
    from grpcpki.diagnosis.wire import name_text, parse_certificate_authorities

    root_der = pki.ca.certificate.subject.public_bytes()
    message = _certificate_request([root_der], tls13=tls13)
    names = parse_certificate_authorities(message, tls13=tls13)
    assert names == [root_der]
    assert name_text(names[0]) == "CN=Probe CA"
    stranger = pki.write("stranger-ca-check.pem", b.make_leaf(b.make_ca("Stranger CA"), "web").cert_pem)
    assert probe_module._issuer_not_listed(str(stranger), names) == ("CN=Stranger CA", "CN=Probe CA")
    assert probe_module._issuer_not_listed(str(pki.client_cert), names) is None
