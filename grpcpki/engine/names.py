"""Subject Alternative Names: parsing and validation before anything is signed.

A certificate is only as good as its names: gRPC checks the dialed host against the
DNS/IP SANs (never the CN when a SAN exists), and SPIFFE-aware peers read the URI SAN.
Everything here is pure and raises :class:`InvalidNameError` with a hint.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from grpcpki.engine.errors import InvalidNameError, NameConstraintError

SanKind = Literal["dns", "ip", "uri"]

# RFC 1035 section 2.3.4 / RFC 5280 section 4.2.1.6 ("preferred name syntax"): LDH labels.
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_MAX_DNS_LENGTH = 253  # RFC 1035: 255 octets on the wire, 253 characters in text form.

# SPIFFE-ID spec, section 2.1 and 2.2: trust domain and path characters.
_SPIFFE_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+\Z")
_SPIFFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+\Z")
_SPIFFE_MAX_LENGTH = 2048  # SPIFFE-ID spec section 2.3: URIs up to 2048 bytes.
_SPIFFE_MAX_TRUST_DOMAIN = 255


@dataclass(frozen=True, order=True)
class San:
    """One Subject Alternative Name, normalised (DNS lowercased and A-label encoded, IP compressed)."""

    kind: SanKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind.upper()}:{self.value}"

    @property
    def is_spiffe(self) -> bool:
        return self.kind == "uri" and self.value.startswith("spiffe://")


# A DNS name that is already in its normalised form: lowercase LDH labels of 1 to 63 characters,
# no wildcard, no trailing dot. validate_dns_name returns such a name unchanged once it has also
# checked what a regular expression does not say (the length, an all-numeric last label, "xn--").
_PLAIN_DNS_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def validate_dns_name(name: str, *, allow_wildcard: bool = True) -> str:
    """Return the normalised (lowercase, A-label) form of a DNS name or raise InvalidNameError."""
    if (
        _PLAIN_DNS_NAME.match(name)
        and len(name) <= _MAX_DNS_LENGTH
        and "xn--" not in name
        and not name.rpartition(".")[2].isdigit()
    ):
        # The common case, in one C call instead of a loop over the labels (a renewal of 10,000
        # certificates checks 20,000 names): names _checked_dns_name accepts unchanged.
        # tests/hostile/test_properties.py holds the two to the same answers.
        return name
    return _checked_dns_name(name, allow_wildcard=allow_wildcard)


def _checked_dns_name(name: str, *, allow_wildcard: bool) -> str:
    """validate_dns_name label by label: every rule, and the error that names the broken one."""
    original = name
    if not name:
        raise InvalidNameError("empty DNS name", "give a host name such as api.example.com")
    if name.endswith("."):
        # A trailing dot is legal in DNS but never matches in TLS hostname checks (RFC 6125 7.2).
        raise InvalidNameError(
            f"DNS name {original!r} ends with a dot", f"use {original.rstrip('.')!r} instead"
        )
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        if not allow_wildcard:
            raise InvalidNameError(f"wildcards are not allowed here: {original!r}")
        # RFC 6125 6.4.3 and every TLS stack gRPC uses: only a whole leftmost '*' label, and it
        # must sit above at least two labels (Go and BoringSSL refuse '*.com'-style names).
        if len(labels) < 3:
            raise InvalidNameError(
                f"wildcard {original!r} is too broad",
                "a wildcard needs at least two labels after it, e.g. *.svc.example.com",
            )
        labels = labels[1:]
    encoded: list[str] = []
    for label in labels:
        if "*" in label:
            raise InvalidNameError(
                f"invalid wildcard in {original!r}",
                "only a whole leftmost label may be '*', e.g. *.example.com",
            )
        if not label:
            raise InvalidNameError(f"DNS name {original!r} has an empty label", "remove the doubled dot")
        if not label.isascii():
            import idna  # internationalised names only: most manifests never need it

            try:
                label = idna.encode(label, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise InvalidNameError(
                    f"DNS name {original!r} is not a valid internationalised name: {exc}"
                ) from None
        label = label.lower()
        if len(label) > 63:
            raise InvalidNameError(
                f"DNS label {label[:20]!r}... in {original!r} is longer than 63 characters",
                "shorten the label (RFC 1035 limit)",
            )
        if not _LDH_LABEL.match(label):
            raise InvalidNameError(
                f"DNS name {original!r} has an invalid label {label!r}",
                "labels use letters, digits and inner hyphens only (no '_', spaces or a leading/trailing '-')",
            )
        if label.startswith("xn--"):
            _check_a_label(label, original)
        encoded.append(label)
    if encoded[-1].isdigit():
        # An all-numeric last label makes it look like a (malformed) IPv4 address to resolvers.
        raise InvalidNameError(
            f"{original!r} is neither a valid IP address nor a DNS name",
            "check the address (IPv4 is four numbers 0-255)",
        )
    result = ".".join((["*"] if wildcard else []) + encoded)
    if len(result) > _MAX_DNS_LENGTH:
        raise InvalidNameError(f"DNS name is longer than {_MAX_DNS_LENGTH} characters: {original[:40]!r}...")
    return result


def _check_a_label(label: str, original: str) -> None:
    """An ``xn--`` label must be a real A-label: Punycode that decodes to a valid U-label and
    encodes back to itself (RFC 5890 2.3.2.1, RFC 5891 5.4). ``xn--zz`` is neither, and peers
    that check IDNA (browsers, Go's idna package) would refuse the name."""
    import idna

    try:
        unicode_label = idna.decode(label)
        valid = idna.encode(unicode_label).decode("ascii") == label
    except (idna.IDNAError, UnicodeError, ValueError):
        valid = False
    if not valid:
        raise InvalidNameError(
            f"DNS name {original!r} has the label {label!r}, which is not a valid IDNA A-label",
            "write the internationalised name itself, such as bücher.example, and grpcpki encodes it",
        )


def _cannot_be_ip(text: str) -> bool:
    """No ':' (so not IPv6) and a character IPv4 never has: text ipaddress would refuse, told
    without its two exceptions (parse_san tries each bare NAME of a manifest as an IP first)."""
    stripped = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    return ":" not in stripped and bool(stripped.strip("0123456789."))


def validate_ip(text: str) -> str:
    """Return the canonical text of an IPv4/IPv6 address (brackets allowed) or raise."""
    stripped = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        # An IP SAN is 4 or 16 octets (RFC 5280 4.2.1.6): an IPv6 zone ("fe80::1%eth0") has no place in it.
        if "%" in stripped:
            raise ValueError(stripped)
        return str(ipaddress.ip_address(stripped))
    except ValueError:
        raise InvalidNameError(
            f"{text!r} is not a valid IP address", "use dotted IPv4 (10.0.0.1) or IPv6 (::1)"
        ) from None


def is_ip(host: str) -> bool:
    """Is ``host`` an IP address (``[v6]`` brackets allowed)? gRPC treats such targets differently:
    no SNI, and only IP SANs match (docs/failures.md#hostname-mismatch)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# A SPIFFE ID the checks below accept: a trust domain of 1 to 255 allowed characters, then path
# segments of allowed characters, none of them "." or "..". (The 2048-byte cap is checked apart.)
_PLAIN_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]{1,255}(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9._-]+)*\Z")


def validate_spiffe_id(text: str) -> str:
    """Validate a SPIFFE ID per the SPIFFE-ID specification; return it unchanged."""
    if len(text) <= _SPIFFE_MAX_LENGTH and _PLAIN_SPIFFE_ID.match(text):
        # The common case in one C call (ASCII only, so characters are bytes): IDs _checked_spiffe_id
        # accepts. tests/hostile/test_properties.py holds the two to the same answers.
        return text
    return _checked_spiffe_id(text)


def _checked_spiffe_id(text: str) -> str:
    """validate_spiffe_id part by part: every rule, and the error that names the broken one."""
    if not text.startswith("spiffe://"):
        raise InvalidNameError(
            f"{text!r} is not a SPIFFE ID", "a SPIFFE ID looks like spiffe://example.org/ns/default/sa/web"
        )
    if len(text.encode()) > _SPIFFE_MAX_LENGTH:
        raise InvalidNameError(f"SPIFFE ID is longer than {_SPIFFE_MAX_LENGTH} bytes")
    rest = text[len("spiffe://") :]
    trust_domain, slash, path = rest.partition("/")
    if any(ch in text for ch in "?#"):
        raise InvalidNameError(f"SPIFFE ID {text!r} has a query or fragment", "remove everything after '?' or '#'")
    if "@" in trust_domain:
        raise InvalidNameError(f"SPIFFE ID {text!r} has userinfo", "remove the 'user@' part")
    if ":" in trust_domain:
        raise InvalidNameError(f"SPIFFE ID {text!r} has a port", "remove the ':port' from the trust domain")
    if not trust_domain:
        raise InvalidNameError(f"SPIFFE ID {text!r} has no trust domain", "e.g. spiffe://example.org/web")
    if len(trust_domain) > _SPIFFE_MAX_TRUST_DOMAIN:
        raise InvalidNameError(f"SPIFFE trust domain is longer than {_SPIFFE_MAX_TRUST_DOMAIN} characters")
    if not _SPIFFE_TRUST_DOMAIN.match(trust_domain):
        hint = (
            f"use {trust_domain.lower()!r}"
            if _SPIFFE_TRUST_DOMAIN.match(trust_domain.lower())
            else "trust domains use lowercase letters, digits, '.', '-' and '_' only"
        )
        raise InvalidNameError(f"invalid SPIFFE trust domain {trust_domain!r}", hint)
    if slash:
        if not path:
            raise InvalidNameError(f"SPIFFE ID {text!r} ends with '/'", f"use {text.rstrip('/')!r}")
        for segment in path.split("/"):
            if segment == "":
                problem = "a trailing '/'" if path.endswith("/") else "an empty path segment ('//')"
                raise InvalidNameError(f"SPIFFE ID {text!r} has {problem}", "remove the extra '/'")
            if segment in (".", ".."):
                raise InvalidNameError(f"SPIFFE ID {text!r} has a '{segment}' path segment", "spell the path out")
            if not _SPIFFE_SEGMENT.match(segment):
                raise InvalidNameError(
                    f"SPIFFE ID {text!r} has invalid characters in {segment!r}",
                    "path segments use letters, digits, '.', '-' and '_' only",
                )
    return text


# RFC 3986 section 2: the characters a URI may hold outside percent-encodings.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_PCHAR = _UNRESERVED | _SUB_DELIMS | frozenset(":@")  # section 3.3
_PATH_CHARS = _PCHAR | frozenset("/")
_QUERY_CHARS = _PCHAR | frozenset("/?")  # sections 3.4 and 3.5 (fragment: the same set)
_USERINFO_CHARS = _UNRESERVED | _SUB_DELIMS | frozenset(":")  # section 3.2.1
_HEX = frozenset("0123456789abcdefABCDEF")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")  # section 3.1
# RFC 5280 sets no upper bound for a URI SAN; SPIFFE's 2048 bytes is the one bound gRPC peers
# know, and a longer name is a mistake (or an attack on whoever prints it).
_MAX_URI_LENGTH = 2048


def _check_uri_part(text: str, part: str, allowed: frozenset[str], original: str) -> None:
    """Every character of ``part`` is allowed there, and every '%' starts a %XX escape (RFC 3986 2.1)."""
    index = 0
    while index < len(part):
        char = part[index]
        if char == "%":
            if len(part) < index + 3 or part[index + 1] not in _HEX or part[index + 2] not in _HEX:
                raise InvalidNameError(
                    f"URI {original!r} has a '%' that does not start a %XX escape in its {text}",
                    "write a literal '%' as %25 per RFC 3986 section 2.1",
                )
            index += 3
            continue
        if char not in allowed:
            raise InvalidNameError(
                f"URI {original!r} has the character {char!r} in its {text}, which RFC 3986 does not allow there",
                f"percent-encode it as %{ord(char):02X}",
            )
        index += 1


def _check_uri_host(host: str, original: str) -> None:
    """RFC 5280 4.2.1.6: a URI with an authority names "a fully qualified domain name or IP address"."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise InvalidNameError(f"URI {original!r} has an unclosed '[' in its host", "write IPv6 hosts as [2001:db8::1]")
        try:
            # No zone ("%25eth0", RFC 6874) and no IPvFuture: a certificate names an address.
            if "%" in host:
                raise ValueError(host)
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidNameError(
                f"URI {original!r} has an invalid IPv6 host {host!r}", "write IPv6 hosts as [2001:db8::1]"
            ) from None
        return
    if "[" in host or "]" in host:
        raise InvalidNameError(f"URI {original!r} has a stray '[' or ']' in its host", "brackets enclose IPv6 hosts only")
    if not host:
        raise InvalidNameError(f"URI {original!r} has no host", "write scheme://host/path")
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    try:
        validate_dns_name(host, allow_wildcard=False)
    except InvalidNameError as exc:
        raise InvalidNameError(f"URI {original!r} has an invalid host: {exc.message}", exc.hint) from None


def validate_uri(text: str) -> str:
    """Validate a URI SAN per RFC 3986 and RFC 5280 4.2.1.6; SPIFFE IDs by their own rules.

    RFC 5280 allows ASCII only (IA5String) and an absolute URI; a URI with an authority must
    name its host. grpcpki always asks for ``scheme://host...``: gRPC peers read URI SANs as
    SPIFFE IDs or as https-like identities, both of which have a host.
    """
    if len(text) > _MAX_URI_LENGTH:
        raise InvalidNameError(f"URI is longer than {_MAX_URI_LENGTH} characters: {text[:40]!r}...")
    # In ASCII every white-space character but the space is also a control character (not
    # printable): one pass over the text in C instead of two calls per character in Python.
    if not text.isascii() or not text.isprintable() or " " in text:
        raise InvalidNameError(
            f"URI {text!r} has spaces, control or non-ASCII characters", "percent-encode them, RFC 3986 section 2.1"
        )
    if text.lower().startswith("spiffe:"):
        return validate_spiffe_id(text)
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise InvalidNameError(f"URI {text!r} has no scheme", "a URI SAN looks like https://example.org/x")
    if not rest.startswith("//"):
        raise InvalidNameError(f"URI {text!r} has no host", "write scheme://host/path")
    # RFC 3986 section 3: authority runs to the first '/', '?' or '#'.
    rest, hash_mark, fragment = rest[2:].partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if hash_mark:
        _check_uri_part("fragment", fragment, _QUERY_CHARS, text)
    if question:
        _check_uri_part("query", query, _QUERY_CHARS, text)
    _check_uri_part("path", slash + path, _PATH_CHARS, text)
    userinfo, at, host_port = authority.rpartition("@")
    if at:
        _check_uri_part("userinfo", userinfo, _USERINFO_CHARS, text)
    # host [ ":" port ], where an IPv6 host is bracketed (RFC 3986 3.2.2) and holds ':' itself.
    close = host_port.find("]") + 1 if host_port.startswith("[") else 0
    host, port_colon, port = host_port[close:].partition(":")
    host = host_port[:close] + host
    if close and host_port[close:] and not port_colon:
        raise InvalidNameError(f"URI {text!r} has text after its IPv6 host", "write [2001:db8::1]:8443")
    _check_uri_host(host, text)
    if port_colon and (not port.isdigit() or not port.isascii() or int(port) > 65535):
        raise InvalidNameError(f"URI {text!r} has an invalid port {port!r}", "a port is a number from 0 to 65535")
    return text


# RFC 5280 appendix A: ub-common-name and ub-organization-name are both 64 characters.
MAX_COMMON_NAME = 64
# What grpcpki appends to a CA's name: " Issuing CA" for the intermediate (init-ca
# --intermediate) and " G<n>" for each CA generation (ca rotate), with room up to G999.
CA_NAME_SUFFIX_ROOM = len(" Issuing CA") + len(" G999")


def validate_common_name(text: str, what: str = "name", *, max_length: int = MAX_COMMON_NAME) -> str:
    """Check a subject attribute (CN, O): 1 to ``max_length`` printable characters, no
    surrounding spaces. Returns it unchanged; InvalidNameError with the limit otherwise."""
    if not text.strip():
        raise InvalidNameError(f"the {what} is empty", f"give a {what} of 1 to {max_length} characters")
    if len(text) > max_length:
        raise InvalidNameError(
            f"the {what} is {len(text)} characters long; the limit is {max_length}",
            "RFC 5280 caps subject names at 64 characters; grpcpki keeps room for the suffixes it adds"
            if max_length < MAX_COMMON_NAME
            else "RFC 5280 caps subject names at 64 characters",
        )
    if not text.isprintable():
        raise InvalidNameError(f"the {what} {text!r} has control characters", "use printable characters only")
    if text != text.strip():
        raise InvalidNameError(f"the {what} {text!r} starts or ends with a space", f"use {text.strip()!r}")
    return text


def validate_ca_name(name: str) -> str:
    """A CA name leaves room for " Issuing CA" and " G<n>", so every CA grpcpki derives from it fits
    in a Common Name."""
    return validate_common_name(name, "CA name", max_length=MAX_COMMON_NAME - CA_NAME_SUFFIX_ROOM)


def parse_san(text: str) -> San:
    """Parse ``dns:NAME``, ``ip:ADDR``, ``uri:URI`` or a bare value (kind detected)."""
    text = text.strip()
    prefix, sep, rest = text.partition(":")
    kind = prefix.lower()
    if sep and kind in ("dns", "ip", "uri") and not rest.startswith("//"):
        if kind == "dns":
            return San("dns", validate_dns_name(rest))
        if kind == "ip":
            return San("ip", validate_ip(rest))
        return San("uri", validate_uri(rest))
    if "://" in text:
        return San("uri", validate_uri(text))
    if not _cannot_be_ip(text):
        try:
            return San("ip", validate_ip(text))
        except InvalidNameError:
            pass
    return San("dns", validate_dns_name(text))


def looks_like_host(name: str) -> San | None:
    """The SAN a server NAME stands for, if it is a valid hostname or IP; else None."""
    try:
        return parse_san(name) if "://" not in name else None
    except InvalidNameError:
        return None


def dedupe(sans: Iterable[San]) -> tuple[San, ...]:
    """Keep the first of each SAN, in order (DNS, then IP, then URI reads best in a certificate)."""
    seen: dict[San, None] = {}
    for san in sans:
        seen.setdefault(san, None)
    order = {"dns": 0, "ip": 1, "uri": 2}
    return tuple(sorted(seen, key=lambda s: order[s.kind]))


# What a certificate's name may hold: it becomes a folder under certs/ (pki.py).
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@")


def validate_cert_name(name: str) -> str:
    """Names become directory names under certs/: refuse anything that could escape it."""
    if not name or name in (".", "..") or not set(name) <= _SAFE_NAME_CHARS or len(name) > 64:
        raise InvalidNameError(
            f"invalid certificate name {name!r}",
            "use 1-64 letters, digits, '.', '-', '_' or '@' (put other identities in --uri/--dns)",
        )
    return name


def leaf_sans(name: str, sans: Iterable[str | San] = (), *, name_as_san: bool = True) -> tuple[San, ...]:
    """The SANs a leaf called NAME gets, validated; InvalidNameError if it would have none.

    A NAME that is a hostname or IP becomes a SAN too; ``localhost`` also gets 127.0.0.1 and
    ::1, because gRPC checks IP targets only against IP SANs (docs/failures.md#hostname-mismatch). Needs no key,
    so it can run before an encrypted CA is unlocked.
    """
    if not name or len(name) > MAX_COMMON_NAME:
        raise InvalidNameError(
            f"certificate name must be 1 to {MAX_COMMON_NAME} characters, got {len(name)}",
            "use a short name; put long identities in --uri/--spiffe-id",
        )
    parsed = [s if isinstance(s, San) else parse_san(s) for s in sans]
    if name_as_san:
        host = looks_like_host(name)
        if host is not None:
            parsed.insert(0, host)
            if host == San("dns", "localhost"):
                parsed += [San("ip", "127.0.0.1"), San("ip", "::1")]
    final_sans = dedupe(parsed)
    check_svid(final_sans)
    if not final_sans:
        # Go (since 1.15) ignores the CommonName, and cryptography's verifier requires a SAN:
        # a certificate without one is useless to half the gRPC world.
        raise InvalidNameError(
            f"{name!r} is not a hostname, so the certificate would have no SAN",
            "add one with --dns, --ip, --uri or --spiffe-id",
        )
    return final_sans


def check_svid(sans: Sequence[San]) -> None:
    """A leaf with a SPIFFE ID is an X509-SVID: exactly one URI SAN (X509-SVID section 2) and a
    non-root path (section 3.1). grpcio drops ``peer_spiffe_id`` for either (docs/spiffe.md)."""
    uris = [s for s in sans if s.kind == "uri"]
    spiffe = [s for s in uris if s.is_spiffe]
    if spiffe and len(uris) > 1:
        raise InvalidNameError(
            f"a certificate with a SPIFFE ID carries exactly one URI SAN (X509-SVID section 2); got {len(uris)}: "
            + ", ".join(s.value for s in uris),
            "issue one certificate per SPIFFE ID",
        )
    for san in spiffe:
        if not san.value[len("spiffe://") :].partition("/")[2]:
            raise InvalidNameError(
                f"{san.value} has no path; a leaf's SPIFFE ID needs one (X509-SVID section 3.1)",
                f"name the workload, e.g. {san.value.rstrip('/')}/ns/default/sa/web",
            )


@dataclass(frozen=True)
class NameConstraints:
    """Permitted subtrees (RFC 5280 4.2.1.10) for a CA: what it may sign for.

    A form with no entry is unconstrained: RFC 5280 applies constraints per name form.
    """

    dns: tuple[str, ...] = ()
    uri_hosts: tuple[str, ...] = ()
    ip: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.dns or self.uri_hosts or self.ip)

    @classmethod
    def parse(
        cls, dns: Iterable[str] = (), uri: Iterable[str] = (), ip: Iterable[str] = ()
    ) -> NameConstraints:
        """Build from user input: ``.svc.cluster.local``, ``spiffe://example.org``, ``10.0.0.0/8``."""
        dns_entries = []
        for entry in dns:
            # RFC 5280 4.2.1.10 defines DNS constraints as "add labels on the left": there is no
            # leading-dot form for dNSName (only for URIs and emails). Go tolerates '.x', but
            # Rust webpki (cryptography's verifier) rejects it as malformed, so '.svc.cluster.local'
            # is written as 'svc.cluster.local', which permits it and every name under it.
            dns_entries.append(validate_dns_name(entry.removeprefix("."), allow_wildcard=False))
        uri_entries = []
        for entry in uri:
            try:
                host = urlsplit(entry).hostname if "://" in entry else entry
            except ValueError:  # urlsplit refuses an unclosed '[' ("Invalid IPv6 URL")
                host = None
            if not host:
                raise InvalidNameError(f"cannot read a host from URI constraint {entry!r}", "e.g. spiffe://example.org")
            leading_dot = host.startswith(".")
            body = validate_dns_name(host[1:] if leading_dot else host, allow_wildcard=False)
            uri_entries.append(("." if leading_dot else "") + body)
        ip_entries = []
        for entry in ip:
            try:
                ip_entries.append(ipaddress.ip_network(entry, strict=True))
            except ValueError:
                raise InvalidNameError(
                    f"{entry!r} is not a network", "write an address with a prefix length, e.g. 10.0.0.0/8"
                ) from None
        return cls(tuple(dns_entries), tuple(uri_entries), tuple(ip_entries))

    def check(self, sans: Iterable[San]) -> None:
        """Raise NameConstraintError for the first SAN outside the permitted subtrees."""
        for san in sans:
            if san.kind == "dns" and self.dns:
                if not any(_dns_within(san.value.removeprefix("*."), c) for c in self.dns):
                    raise NameConstraintError(
                        f"{san} is outside the CA's permitted DNS names ({', '.join(self.dns)})",
                        "use a name under one of them, or a CA without this constraint",
                    )
            elif san.kind == "ip" and self.ip:
                address = ipaddress.ip_address(san.value)
                if not any(address in net for net in self.ip):
                    raise NameConstraintError(
                        f"{san} is outside the CA's permitted IP ranges ({', '.join(map(str, self.ip))})",
                        "use an address in one of them, or a CA without this constraint",
                    )
            elif san.kind == "uri" and self.uri_hosts:
                try:
                    host = urlsplit(san.value).hostname or ""
                except ValueError:  # a URI read from someone's certificate may be malformed
                    host = ""
                if not any(_uri_host_within(host, c) for c in self.uri_hosts):
                    raise NameConstraintError(
                        f"{san} is outside the CA's permitted URI hosts ({', '.join(self.uri_hosts)})",
                        "use a URI/SPIFFE ID in a permitted trust domain",
                    )


def _dns_within(name: str, constraint: str) -> bool:
    """RFC 5280 4.2.1.10: 'example.com' permits it and its subdomains; '.example.com' only subdomains."""
    name = name.lower()
    if constraint.startswith("."):
        return name.endswith(constraint)
    return name == constraint or name.endswith("." + constraint)


def _uri_host_within(host: str, constraint: str) -> bool:
    """RFC 5280 4.2.1.10 for URIs: 'example.org' is that host only; '.example.org' its subdomains."""
    host = host.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint
