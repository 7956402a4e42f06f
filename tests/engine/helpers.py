"""Assertions on certificate profiles, in the spirit of trustme's assert_is_ca/assert_is_leaf."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID


def assert_is_ca(cert: x509.Certificate, *, path_len: int | None = None) -> None:
    ext = cert.extensions
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical is True
    assert basic.value.ca is True
    assert basic.value.path_length == path_len
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical is True
    assert usage.value.key_cert_sign is True
    assert usage.value.crl_sign is True
    assert usage.value.digital_signature is False
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert ski.digest and aki.key_identifier
    if cert.issuer == cert.subject:
        assert aki.key_identifier == ski.digest
    # No EKU on CAs: an EKU there constrains every leaf below it.
    try:
        ext.get_extension_for_class(x509.ExtendedKeyUsage)
        raise AssertionError("CA certificate must not carry an EKU")
    except x509.ExtensionNotFound:
        pass


def assert_is_leaf(cert: x509.Certificate, *, server: bool, client: bool, server_profile: bool | None = None) -> None:
    """``server_profile``: made by the server profile (RSA keyEncipherment); default ``server``."""
    ext = cert.extensions
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical is True and basic.value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical is True
    assert usage.value.digital_signature is True
    assert usage.value.key_cert_sign is False and usage.value.crl_sign is False
    is_rsa = isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert usage.value.key_encipherment is (is_rsa and (server if server_profile is None else server_profile))
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical is False
    assert (ExtendedKeyUsageOID.SERVER_AUTH in eku.value) is server
    assert (ExtendedKeyUsageOID.CLIENT_AUTH in eku.value) is client
    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert len(san.value) >= 1
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    # RFC 5280 4.1.2.2: positive, at most 20 octets; CA/B Forum: at least 64 bits of entropy.
    assert 0 < cert.serial_number < 2**159
    assert cert.serial_number.bit_length() > 64
