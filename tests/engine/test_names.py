"""SAN parsing and validation: table-driven, every rule with a case on each side."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from grpcpki.engine import InvalidNameError, NameConstraintError, NameConstraints, San, parse_san
from grpcpki.engine.export import validate_env_prefix, validate_namespace, validate_secret_name
from grpcpki.engine.names import validate_dns_name, validate_spiffe_id

VALID = [
    ("localhost", San("dns", "localhost")),
    ("API.Example.COM", San("dns", "api.example.com")),
    ("*.svc.cluster.local", San("dns", "*.svc.cluster.local")),
    ("bücher.example", San("dns", "xn--bcher-kva.example")),
    ("dns:xn--bcher-kva.example", San("dns", "xn--bcher-kva.example")),
    ("127.0.0.1", San("ip", "127.0.0.1")),
    ("::1", San("ip", "::1")),
    ("[::1]", San("ip", "::1")),
    ("ip:2001:db8:0:0:0:0:0:1", San("ip", "2001:db8::1")),
    ("spiffe://example.org/ns/default/sa/web", San("uri", "spiffe://example.org/ns/default/sa/web")),
    ("spiffe://example.org", San("uri", "spiffe://example.org")),
    ("uri:https://example.org/svc", San("uri", "https://example.org/svc")),
    ("a" * 63 + ".example", San("dns", "a" * 63 + ".example")),
]

INVALID = [
    ("", "empty DNS name"),
    ("example.com.", "ends with a dot"),
    ("*.com", "too broad"),
    ("a.*.example.com", "invalid wildcard"),
    ("f*o.example.com", "invalid wildcard"),
    ("under_score.example", "invalid label"),
    ("-lead.example", "invalid label"),
    ("a..b", "empty label"),
    ("a" * 64 + ".example", "longer than 63"),
    (".".join(["abcdefghij"] * 25), "longer than 253"),
    ("ip:999.1.1.1", "not a valid IP"),
    ("1.2.3.256", "neither a valid IP address nor a DNS name"),
    ("spiffe://Example.org/x", "invalid SPIFFE trust domain"),
    ("spiffe://example.org/", "ends with '/'"),
    ("spiffe://example.org/a//b", "empty path segment"),
    ("spiffe://example.org/a/", "trailing '/'"),
    ("spiffe://example.org/a/../b", "'..' path segment"),
    ("spiffe://example.org/./b", "'.' path segment"),
    ("spiffe://example.org/a?x=1", "query or fragment"),
    ("spiffe://example.org/a#f", "query or fragment"),
    ("spiffe://example.org:443/a", "has a port"),
    ("spiffe://user@example.org/a", "has userinfo"),
    ("spiffe:///a", "no trust domain"),
    ("spiffe://example.org/a b", "spaces"),
    ("spiffe://example.org/caf%C3%A9", "invalid characters"),
    ("uri:not a uri", "spaces"),
    ("uri:mailto", "no scheme"),
    ("uri:urn:example:x", "no host"),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[v[0][:30] or "empty" for v in VALID])
def test_valid_names(text: str, expected: San) -> None:
    assert parse_san(text) == expected


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[v[0][:30] or "empty" for v in INVALID])
def test_invalid_names_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_san(text)
    assert message in str(info.value)


def test_wildcard_refused_where_not_allowed() -> None:
    with pytest.raises(InvalidNameError, match="not allowed"):
        validate_dns_name("*.example.com", allow_wildcard=False)


def test_spiffe_length_limit() -> None:
    with pytest.raises(InvalidNameError, match="2048"):
        validate_spiffe_id("spiffe://example.org/" + "a" * 2100)


CONSTRAINTS = NameConstraints.parse(dns=[".svc.cluster.local"], uri=["spiffe://example.org"], ip=["10.0.0.0/8"])


@pytest.mark.parametrize(
    ("san", "allowed"),
    [
        ("api.ns.svc.cluster.local", True),
        ("svc.cluster.local", True),
        ("*.ns.svc.cluster.local", True),
        ("evilsvc.cluster.local", False),
        ("example.com", False),
        ("10.20.30.40", True),
        ("11.0.0.1", False),
        # RFC 5280 4.2.1.10: an iPAddress list constrains both families; ::1 is in no listed range.
        ("::1", False),
        ("spiffe://example.org/web", True),
        ("spiffe://sub.example.org/web", False),
        ("spiffe://other.org/web", False),
    ],
)
def test_name_constraints(san: str, allowed: bool) -> None:
    parsed = parse_san(san)
    if allowed:
        CONSTRAINTS.check([parsed])
    else:
        with pytest.raises(NameConstraintError, match="outside"):
            CONSTRAINTS.check([parsed])


def test_unconstrained_forms_stay_free() -> None:
    dns_only = NameConstraints.parse(dns=["example.com"])
    dns_only.check([parse_san("spiffe://anything.org/x"), parse_san("192.168.1.1")])


def test_constraint_input_errors() -> None:
    with pytest.raises(InvalidNameError, match="not a network"):
        NameConstraints.parse(ip=["10.0.0.1/8"])
    with pytest.raises(InvalidNameError):
        NameConstraints.parse(dns=["bad_name.example"])


@pytest.mark.parametrize(
    "validate, text",
    [
        (validate_dns_name, "a.example\n"),
        (validate_spiffe_id, "spiffe://example.org/x\n"),
        (validate_spiffe_id, "spiffe://example.org\n"),
        (validate_secret_name, "web-tls\n"),
        (validate_namespace, "ns\n"),
        (validate_env_prefix, "TLS_\n"),
    ],
)
def test_a_trailing_newline_is_refused_not_kept(validate: Callable[[str], str], text: str) -> None:
    # Python's `$` also matches before a final "\n": the patterns end in \Z, so a name read from
    # a line is refused here rather than written into a certificate or a Secret with its newline.
    with pytest.raises(InvalidNameError):
        validate(text)
