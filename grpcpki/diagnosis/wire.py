"""TLS and HTTP/2 bytes as the probe sees them: handshake messages, alerts, DER names.

Pure parsing, no policy: :mod:`.handshake` feeds it what ``ssl`` observed, :mod:`.probe` decides
what it means. References: RFC 8446 (TLS 1.3), RFC 5246 (TLS 1.2), RFC 7540 (HTTP/2).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from cryptography import x509

__all__ = [
    "ALERTS",
    "EMPTY_SETTINGS",
    "HTTP2_PREFACE",
    "Trace",
    "alert_from_reason",
    "is_settings",
    "name_text",
    "parse_certificate_authorities",
    "parse_certificate_message",
]


# RFC 7540 §3.5 client connection preface, then an empty SETTINGS frame (§6.5: length 0, type 4,
# flags 0, stream 0) so that an HTTP/2 server answers with its own SETTINGS.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x04

# TLS alert descriptions (RFC 8446 §6.2) as seen in the msg callback.
ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    109: "missing_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
_HANDSHAKE, _ALERT = 22, 21
_CERTIFICATE, _CERTIFICATE_REQUEST = 11, 13


@dataclass
class Trace:
    """Handshake messages seen by the msg callback."""

    supported: bool = False
    cert_request: bool = False
    acceptable_cas: list[bytes] = field(default_factory=list)  # DER Names from the CertificateRequest
    server_certs: list[bytes] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    def callback(
        self, _conn: object, direction: str, version: int, content_type: int, msg_type: int, data: bytes
    ) -> None:
        if direction != "read":
            return
        if content_type == _HANDSHAKE and msg_type == _CERTIFICATE_REQUEST:
            self.cert_request = True
            self.acceptable_cas = parse_certificate_authorities(data, tls13=version == ssl.TLSVersion.TLSv1_3)
        elif content_type == _HANDSHAKE and msg_type == _CERTIFICATE and not self.server_certs:
            self.server_certs = parse_certificate_message(data, tls13=version == ssl.TLSVersion.TLSv1_3)
        elif content_type == _ALERT and len(data) == 2:
            self.alerts.append(ALERTS.get(data[1], f"alert {data[1]}"))


def parse_certificate_message(data: bytes, *, tls13: bool) -> list[bytes]:
    """DER certificates of a Certificate handshake message (RFC 5246 §7.4.2, RFC 8446 §4.4.2)."""
    try:
        pos = 4  # msg_type(1) + length(3)
        if tls13:
            pos += 1 + data[pos]  # certificate_request_context
        end = pos + 3 + int.from_bytes(data[pos : pos + 3], "big")
        pos += 3
        certs: list[bytes] = []
        while pos < end:
            size = int.from_bytes(data[pos : pos + 3], "big")
            certs.append(data[pos + 3 : pos + 3 + size])
            pos += 3 + size
            if tls13:
                pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # CertificateEntry extensions
        return certs
    except IndexError:
        return []


def parse_certificate_authorities(data: bytes, *, tls13: bool) -> list[bytes]:
    """DER DistinguishedNames a CertificateRequest lists as acceptable issuers (may be empty).

    TLS 1.2 (RFC 5246 §7.4.4): certificate_types, signature_algorithms, certificate_authorities.
    TLS 1.3 (RFC 8446 §4.3.2, §4.2.4): context, then extensions; certificate_authorities is type 47.
    BoringSSL servers (gRPC C-core) fill it from their client-CA roots; Python's ssl servers do not.
    """
    try:
        pos = 4
        if tls13:
            pos += 1 + data[pos]
            end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            while pos < end:
                kind, size = int.from_bytes(data[pos : pos + 2], "big"), int.from_bytes(data[pos + 2 : pos + 4], "big")
                if kind == 47:
                    return _names(data[pos + 4 : pos + 4 + size])
                pos += 4 + size
            return []
        pos += 1 + data[pos]
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
        return _names(data[pos:])
    except IndexError:
        return []


def _names(block: bytes) -> list[bytes]:
    end = 2 + int.from_bytes(block[:2], "big")
    pos, names = 2, []
    while pos < end:
        size = int.from_bytes(block[pos : pos + 2], "big")
        names.append(block[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return names


def alert_from_reason(reason: str | None) -> str | None:
    # "TLSV13_ALERT_CERTIFICATE_REQUIRED" -> "certificate_required"
    if reason and "_ALERT_" in reason:
        return reason.split("_ALERT_", 1)[1].lower()
    return None


def is_settings(data: bytes) -> bool:
    # RFC 7540 §4.1 frame header: length(3) type(1) flags(1) stream(4); SETTINGS is on stream 0.
    return len(data) >= 9 and data[3] == _SETTINGS and data[5:9] == b"\x00\x00\x00\x00"


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) TLVs of a DER byte string, one level deep."""
    items, pos = [], 0
    while pos < len(data):
        tag, size, pos = data[pos], data[pos + 1], pos + 2
        if size & 0x80:
            count = size & 0x7F
            size, pos = int.from_bytes(data[pos : pos + count], "big"), pos + count
        items.append((tag, data[pos : pos + size]))
        pos += size
    return items


def name_text(der: bytes) -> str:
    """RFC 4514 text of a DER Name (cryptography has no public DER Name loader)."""
    try:
        ((_, rdns),) = _der_items(der)
        attributes = []
        for _, rdn in _der_items(rdns):
            for _, pair in _der_items(rdn):
                (_, oid), (_, value) = _der_items(pair)
                attributes.append(x509.NameAttribute(_decode_oid(oid), value.decode("utf-8", "replace")))
        return x509.Name(attributes).rfc4514_string()
    except (ValueError, IndexError):
        return der.hex()


def _decode_oid(body: bytes) -> x509.ObjectIdentifier:
    parts, value = [body[0] // 40, body[0] % 40], 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return x509.ObjectIdentifier(".".join(map(str, parts)))
