"""RFC 7512 PKCS#11 URIs as grpcpki reads and writes them (no token needed)."""

from __future__ import annotations

import pytest

from grpcpki.engine.hsm import Pkcs11Uri, TokenError, TokenLogin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("pkcs11:token=grpcpki;object=ca-root", Pkcs11Uri("grpcpki", "ca-root"), id="minimal"),
        # RFC 7512 2.3: values are percent-encoded; id is raw bytes.
        pytest.param(
            "pkcs11:token=My%20Token;object=CA%3bkey;id=%01%a0;type=private",
            Pkcs11Uri("My Token", "CA;key", id=b"\x01\xa0"), id="escapes",
        ),
        pytest.param(
            "pkcs11:object=ca;token=t;serial=1234abcd?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/pin",
            Pkcs11Uri("t", "ca", serial="1234abcd", module_path="/usr/lib/softhsm/libsofthsm2.so",
                      pin_source="/run/pin"),
            id="query",
        ),
    ],
)
def test_parse_and_round_trip(text: str, expected: Pkcs11Uri) -> None:
    parsed = Pkcs11Uri.parse(text)
    assert parsed == expected
    assert Pkcs11Uri.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("token=x;object=y", "not a PKCS#11 URI", id="no-scheme"),
        pytest.param("pkcs11:object=y", "no token= attribute", id="no-token"),
        pytest.param("pkcs11:token=x", "no object= attribute", id="no-object"),
        pytest.param("pkcs11:token=x;object=y;slot-id=3", "unsupported attribute 'slot-id'", id="unknown"),
        pytest.param("pkcs11:token=x;object=y;object=z", "appears twice", id="twice"),
        pytest.param("pkcs11:token=x;object=y;type=cert", "a CA key is a private key", id="type"),
        pytest.param("pkcs11:token=x;object=y?pin-value=1234", "visible to every user", id="pin-value"),
        pytest.param("pkcs11:token=x;object=%ff", "is not UTF-8", id="not-utf8"),
    ],
)
def test_bad_uris_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(TokenError) as caught:
        Pkcs11Uri.parse(text)
    assert fragment in str(caught.value)


def test_intermediate_label_and_login_repr_hide_the_pin() -> None:
    root = Pkcs11Uri.parse("pkcs11:token=t;object=ca;id=%01")
    assert root.intermediate() == Pkcs11Uri("t", "ca-intermediate")
    login = TokenLogin(module="/x.so", pin=b"secret-pin")
    assert "secret-pin" not in repr(login)
