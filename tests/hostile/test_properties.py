"""Property tests (hypothesis) over every parser a user feeds: SANs of every kind, durations,
names, paths, PEM/DER input. Each input ends in success or one clear error, never a traceback.

Volume runs in-process (engine parsers, and the real ``grpcpki.cli.main`` with its error handler
in a click CliRunner isolation); a smaller sample goes through ``python -m grpcpki``. The number
of cases run is printed in the "hypothesis cases" section of the test report.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grpcpki.cli import main
from grpcpki.engine import CA, Role
from grpcpki.engine.certs import cert_infos, leaf_sans, load_certificates
from grpcpki.engine.durations import MAX_DURATION, format_duration, parse_days, parse_duration
from grpcpki.engine.errors import GrpcpkiError, InvalidNameError
from grpcpki.engine.keys import key_protection, load_private_key
from grpcpki.engine.names import (
    _checked_dns_name,
    _checked_spiffe_id,
    parse_san,
    validate_ca_name,
    validate_dns_name,
    validate_ip,
    validate_spiffe_id,
    validate_uri,
)
from grpcpki.engine.pem import split_pem
from hostile_support import count
from support import run_grpcpki

# -- strategies --------------------------------------------------------------------------------
# Characters that matter to the parsers: URI delimiters, percent, brackets, IDNA, controls.
_TRICKY = ":/?#[]@!$&'()*+,;=%<>\"{}|\\^`~ -._\x00\x01\x7f\u00e9\u00fc\u200b\u0663\ufeff"
_ALPHABET = string.ascii_letters + string.digits + _TRICKY
tricky_text = st.text(alphabet=_ALPHABET, max_size=60)

labels = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"xn--[a-z0-9-]{1,12}", fullmatch=True),
    st.sampled_from(["*", "bücher", "localhost", "-a", "a-", "a_b", "", "xn--bcher-kva", "0"]),
)
dns_names = st.lists(labels, min_size=1, max_size=5).map(".".join)
ips = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){0,4}", fullmatch=True),
    st.sampled_from(["fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3.04", "[::1", "::1]"]),
)
ports = st.one_of(st.integers(0, 70000).map(str), st.sampled_from(["", "x", "-1", "08", "65535", "99999999999999999999"]))
uris = st.builds(
    lambda scheme, user, host, port, path, query, frag: (
        f"{scheme}://{user}{host}{(':' + port) if port is not None else ''}{path}{query}{frag}"
    ),
    st.sampled_from(["https", "http", "spiffe", "grpc", "h", "1x", "", "urn"]),
    st.sampled_from(["", "user@", "u:p@", "@", "a@b@"]),
    st.one_of(dns_names, ips, st.sampled_from(["", "[::1]", "[v1.x]", "[fe80::1%25eth0]"])),
    st.one_of(st.none(), ports),
    st.one_of(st.just(""), tricky_text.map(lambda t: "/" + t)),
    st.one_of(st.just(""), tricky_text.map(lambda t: "?" + t)),
    st.one_of(st.just(""), tricky_text.map(lambda t: "#" + t)),
)
san_inputs = st.one_of(
    dns_names, ips, uris, tricky_text,
    st.tuples(st.sampled_from(["dns:", "ip:", "uri:", "DNS:", "spiffe://"]), tricky_text).map("".join),
)
durations = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**20), st.sampled_from(["", "ms", "s", "m", "h", "d", "w", "y", "D"])),
    st.builds(lambda a, b, u: f"{a}.{b}{u}", st.integers(0, 999), st.integers(0, 10**10), st.sampled_from(["s", "h", ""])),
    tricky_text,
)


# -- engine parsers, in-process (the volume) ---------------------------------------------------
@settings(max_examples=600)
@given(san_inputs)
def test_any_san_parses_or_says_why(text: str) -> None:
    count("engine: parse_san")
    try:
        san = parse_san(text)
    except InvalidNameError as exc:
        assert exc.message and "\n" not in exc.message
        return
    # What is accepted can be put in a certificate, and reads back the same.
    assert parse_san(f"{san.kind}:{san.value}") == san
    if san.kind == "dns":
        x509.DNSName(san.value)
        assert san.value == san.value.lower() and san.value.isascii()
    elif san.kind == "ip":
        ipaddress.ip_address(san.value)
    else:
        x509.UniformResourceIdentifier(san.value)
        assert san.value.isascii() and not any(c.isspace() for c in san.value)


@settings(max_examples=400)
@given(uris)
def test_accepted_uris_have_a_host_and_a_valid_port(text: str) -> None:
    count("engine: validate_uri")
    from urllib.parse import urlsplit

    try:
        validate_uri(text)
    except InvalidNameError:
        return
    parts = urlsplit(text)  # never raises for what grpcpki accepts ("Invalid IPv6 URL"...)
    assert parts.hostname
    assert parts.port is None or 0 <= parts.port <= 65535


@settings(max_examples=300)
@given(dns_names)
def test_accepted_dns_names_are_idna_round_trips(name: str) -> None:
    count("engine: validate_dns_name")
    import idna

    try:
        value = validate_dns_name(name)
    except InvalidNameError:
        return
    for label in value.split("."):
        if label.startswith("xn--"):
            assert idna.encode(idna.decode(label)).decode() == label
    assert len(value) <= 253


def _outcome(check: Callable[[], str]) -> tuple[str, ...]:
    """What a validator answered: the value it returned, or its error's message and hint."""
    try:
        return ("accepted", check())
    except InvalidNameError as exc:
        return ("refused", exc.message, exc.hint or "")


# The one-regex fast paths of validate_dns_name and validate_spiffe_id (issue 10: a renewal of
# 10,000 leaves checks their 30,000 stored SANs again) answer exactly as the full checks would.
long_labels = st.integers(1, 70).map(lambda n: "a" * n)
fast_path_names = st.one_of(
    dns_names, dns_names.map(str.upper), tricky_text,
    st.lists(st.one_of(labels, long_labels), min_size=1, max_size=6).map(".".join),
    st.integers(240, 260).map(lambda n: ("a" * 62 + ".") * (n // 63) + "b" * (n % 63 or 1)),
)
spiffe_ids = st.builds(
    lambda domain, segments: "spiffe://" + domain + "".join("/" + s for s in segments),
    st.one_of(st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True), tricky_text,
              st.sampled_from(["", "Example.org", "a" * 255, "a" * 256, "ex.org:8443", "u@ex.org"])),
    st.lists(st.one_of(st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True),
                       st.sampled_from([".", "..", "...", ".a", "..b", "", "a" * 2040]), tricky_text), max_size=4),
)


@settings(max_examples=300)
@given(fast_path_names, st.booleans())
@example("a" * 63 + ".example", True)
@example("a" * 64 + ".example", True)
@example("b." + "a" * 64, True)
@example(".".join(["a" * 63] * 4)[:253], True)
@example(".".join(["a" * 63] * 4)[:254], True)
@example("svc-00001.internal", True)
@example("svc.123", True)
@example("123.svc", True)
@example("xn--bcher-kva.example", True)
@example("a.xn--zz", True)
@example("Svc.Example", True)
@example("*.svc.example", False)
def test_the_fast_dns_check_answers_as_the_full_one(name: str, allow_wildcard: bool) -> None:
    count("engine: validate_dns_name, fast path vs full")
    assert _outcome(lambda: validate_dns_name(name, allow_wildcard=allow_wildcard)) == _outcome(
        lambda: _checked_dns_name(name, allow_wildcard=allow_wildcard)
    )


@settings(max_examples=300)
@given(spiffe_ids)
@example("spiffe://example.org/svc-00001")
@example("spiffe://example.org/./a")
@example("spiffe://example.org/../a")
@example("spiffe://example.org/.../a")
@example("spiffe://example.org/a/")
@example("spiffe://example.org//a")
@example("spiffe://" + "a" * 255 + "/x")
@example("spiffe://" + "a" * 256 + "/x")
@example("spiffe://example.org/" + "a" * 2028)
@example("spiffe://example.org/" + "a" * 2027)
def test_the_fast_spiffe_check_answers_as_the_full_one(text: str) -> None:
    count("engine: validate_spiffe_id, fast path vs full")
    assert _outcome(lambda: validate_spiffe_id(text)) == _outcome(lambda: _checked_spiffe_id(text))


@settings(max_examples=400)
@given(durations)
def test_durations_parse_in_range_or_say_how(text: str) -> None:
    count("engine: parse_duration / parse_days")
    try:
        value = parse_duration(text)
    except GrpcpkiError as exc:
        assert exc.hint and "\n" not in exc.message
    else:
        assert timedelta(0) <= value <= MAX_DURATION
        assert parse_duration(format_duration(value)) == value
    try:
        days = parse_days(text)
    except GrpcpkiError:
        pass
    else:
        assert 1 <= days <= 36500


@settings(max_examples=300)
@given(st.text(max_size=80), st.text(max_size=40))
def test_names_are_checked_before_any_certificate_is_built(name: str, org: str) -> None:
    count("engine: CA and leaf names")
    try:
        validate_ca_name(name)
    except InvalidNameError:
        pass
    try:
        leaf_sans(name, ["localhost"])
    except InvalidNameError:
        pass


@pytest.fixture(scope="module")
def material() -> dict[str, bytes]:
    ca = CA.create("Property CA")
    leaf = ca.issue(Role.SERVER, "localhost")
    return {"cert": leaf.cert_pem, "chain": leaf.chain_pem, "key": leaf.key_pem,
            "encrypted": ca.private_key_pem(b"secret"), "ca": ca.cert_pem}


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        if buffer:
            buffer[position % len(buffer)] = value
    return bytes(buffer[:cut] if cut is not None else buffer)


mutations = st.tuples(
    st.sampled_from(["cert", "chain", "key", "encrypted", "ca"]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.booleans(),
)


@settings(max_examples=300)
@given(mutations)
def test_damaged_pem_and_der_fail_with_one_clear_error(material: dict[str, bytes], case: tuple) -> None:  # type: ignore[type-arg]
    count("engine: PEM/DER readers")
    which, edits, cut, as_der = case
    data = material[which]
    if as_der:
        blocks = split_pem(data)
        import base64

        data = base64.b64decode(b"".join(blocks[0].text.splitlines()[1:-1])) if blocks else data
    data = _mutate(data, edits, cut)
    for reader in (
        lambda: cert_infos(data, source="input"),
        lambda: load_certificates(data, source="input"),
        lambda: load_private_key(data, b"secret", source="input"),
    ):
        try:
            reader()
        except GrpcpkiError as exc:
            assert exc.message and "\n" not in exc.message
    key_protection(data)  # never raises: unknown is "not strong"
    split_pem(data)


# -- the real CLI and its error handler, in-process -----------------------------------------------
@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("properties") / "pki"
    code, _out, err = _main(["--pki", str(path), "init-ca", "--name", "Property CA"])
    assert code == 0, err
    return path


@pytest.fixture(autouse=True, scope="module")
def _leave_the_cli_group_as_found() -> Iterator[None]:
    from grpcpki.cli import cli

    yield
    # click caches the group's help option from the first real context (-h, --help); a later
    # test that renders the group's help from a bare click.Context (tests/speed) must not see it.
    cli._help_option = None


def _main(args: list[str]) -> tuple[int, str, str]:
    """``grpcpki ARGS`` through ``grpcpki.cli.main`` (the real top-level error handler)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        else:  # pragma: no cover - main always exits
            code = 0
        return code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


def assert_clean(code: int, out: str, err: str) -> None:
    """Success, one ``error:`` line (exit 1), or a click usage error naming the problem (exit 2)."""
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in out + err and "unexpected error" not in err, err
    if code == 1:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    if code == 2:
        assert "Error:" in err, err


cli_values = st.one_of(san_inputs, durations, tricky_text.filter(lambda t: "\x00" not in t))


@settings(max_examples=150)
@given(st.sampled_from(["--dns", "--ip", "--uri", "--spiffe-id"]), san_inputs.filter(lambda t: "\x00" not in t))
def test_issue_flags_in_process(pki_dir: Path, flag: str, value: str) -> None:
    count("cli in-process: issue server --dns/--ip/--uri/--spiffe-id")
    code, out, err = _main(["--pki", str(pki_dir), "issue", "server", "fuzz", flag, value, "--replace", "--json"])
    assert_clean(code, out, err)
    if code == 0:
        # What was signed is the validated value, in the certificate (and so in the inventory).
        import json

        expected = {
            "--dns": lambda v: f"DNS:{validate_dns_name(v)}",
            "--ip": lambda v: f"IP:{validate_ip(v)}",
            "--uri": lambda v: f"URI:{v}",
            "--spiffe-id": lambda v: f"URI:{v}",
        }[flag](value)
        assert expected in json.loads(out)["sans"]


@settings(max_examples=150)
@given(
    st.sampled_from([["list", "--expiring"], ["renew", "--all", "--dry-run", "--within"], ["list", "--pki"],
                     ["init-ca", "--days"], ["issue", "server", "x", "--days"], ["inspect"], ["doctor", "--cert"],
                     ["renew", "--all", "--watch"], ["init-ca", "--name"]]),
    cli_values,
)
def test_options_in_process(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory, command: list[str], value: str) -> None:
    count("cli in-process: durations, days, names, paths")
    if command[0] == "init-ca":
        # init-ca must not touch the shared PKI: a fresh folder, and --days stays invalid-or-cheap.
        target = tmp_path_factory.mktemp("init") / "pki"
        args = ["--pki", str(target), *command, value]
        if command[1] == "--days":
            args += ["--name", "Fuzz CA"]
    elif command == ["renew", "--all", "--watch"]:
        args = ["--pki", str(pki_dir), *command, value, "--force"]  # refused after parsing: never loops
    else:
        args = ["--pki", str(pki_dir), *command, value]
    code, out, err = _main(args)
    if command[0] == "doctor":
        # doctor reports findings about the file (exit 1) as a report, not as one error line.
        assert code in (0, 1, 2) and "Traceback" not in out + err and "unexpected error" not in out + err, err
    else:
        assert_clean(code, out, err)


@settings(max_examples=80)
@given(mutations)
def test_inspect_and_doctor_on_damaged_files_in_process(
    pki_dir: Path, material: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory, case: tuple  # type: ignore[type-arg]
) -> None:
    count("cli in-process: inspect / doctor --cert on damaged PEM/DER")
    which, edits, cut, _as_der = case
    path = tmp_path_factory.mktemp("damaged") / "input.pem"
    path.write_bytes(_mutate(material[which], edits, cut))
    for command in (["inspect", str(path)], ["doctor", "--cert", str(path)]):
        code, out, err = _main(["--pki", str(pki_dir), *command])
        assert code in (0, 1, 2) and "Traceback" not in out + err and "unexpected error" not in out + err, err
        if command[0] == "inspect":
            assert_clean(code, out, err)


# -- a smaller sample through the real entry point ---------------------------------------------------
@settings(max_examples=12)
@given(st.sampled_from(["--dns", "--ip", "--uri"]), san_inputs.filter(lambda t: "\x00" not in t and t.strip()),
       durations.filter(lambda t: "\x00" not in t))
def test_python_m_grpcpki_sample(pki_dir: Path, flag: str, san: str, duration: str) -> None:
    count("subprocess: python -m grpcpki issue / list")
    for args in (["issue", "server", "fuzz-sub", flag, san, "--replace"], ["list", "--expiring", duration]):
        result = run_grpcpki("--pki", str(pki_dir), *args)
        assert_clean(result.code, result.stdout, result.stderr)
