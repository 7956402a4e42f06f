"""In-memory certificate authority and certificate facts.

``CA`` and ``Leaf`` are the trustme-sized core: no files, no inventory. The on-disk PKI
(:mod:`grpcpki.engine.pki`) is built on top of them.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from grpcpki.engine import profiles
from grpcpki.engine.errors import (
    CannotSignError,
    KeyMismatchError,
    PemError,
    ValidityError,
)
from grpcpki.engine.keys import (
    KeyType,
    PrivateKey,
    PublicKey,
    describe_key,
    generate_key,
    key_type_of,
    load_private_key,
    private_key_pem,
    public_key_bytes,
    signature_hash,
)
# leaf_sans lives in names.py (no cryptography: the manifest parser uses it); imported here for CA.issue and callers.
from grpcpki.engine.names import NameConstraints, San, leaf_sans, validate_common_name
from grpcpki.engine.profiles import Role
from grpcpki.engine.storage import read_file

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
# RFC 5280 4.1.2.2 caps serials at 20 octets; x509.random_serial_number() gives 159 random
# bits, positive, well above CA/B Forum's 64-bit entropy floor.
_MAX_COMMON_NAME = 64  # RFC 5280 appendix A: ub-common-name


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC)


@dataclass(frozen=True)
class CertInfo:
    """Plain facts about one certificate, safe to print or serialise."""

    subject: str
    common_name: str | None
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    sans: tuple[San, ...]
    key_type: str
    signature_algorithm: str
    is_ca: bool
    path_len: int | None
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    fingerprint_sha256: str
    subject_key_id: str | None
    authority_key_id: str | None
    self_signed: bool
    has_san_extension: bool
    basic_constraints_critical: bool | None
    key_usage_critical: bool | None
    name_constraints: NameConstraints | None = None

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    def validity_state(self, now: datetime | None = None) -> str:
        moment = _now(now)
        if moment < self.not_before:
            return "not-yet-valid"
        if moment >= self.not_after:
            return "expired"
        return "valid"

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "common_name": self.common_name,
            "issuer": self.issuer,
            "serial": self.serial_hex,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "sans": [str(s) for s in self.sans],
            "key_type": self.key_type,
            "signature_algorithm": self.signature_algorithm,
            "is_ca": self.is_ca,
            "path_len": self.path_len,
            "key_usage": list(self.key_usage),
            "extended_key_usage": list(self.extended_key_usage),
            "fingerprint_sha256": self.fingerprint_sha256,
            "subject_key_id": self.subject_key_id,
            "authority_key_id": self.authority_key_id,
            "self_signed": self.self_signed,
        }


def _hex(data: bytes) -> str:
    return data.hex(":").upper()


def info_from_certificate(cert: x509.Certificate) -> CertInfo:
    ext = cert.extensions
    sans: list[San] = []
    has_san = False
    try:
        san_ext = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        has_san = True
        for gn in san_ext:
            if isinstance(gn, x509.DNSName):
                sans.append(San("dns", gn.value))
            elif isinstance(gn, x509.IPAddress):
                sans.append(San("ip", str(gn.value)))
            elif isinstance(gn, x509.UniformResourceIdentifier):
                sans.append(San("uri", gn.value))
    except x509.ExtensionNotFound:
        pass
    is_ca, path_len, bc_critical = False, None, None
    try:
        bc = ext.get_extension_for_class(x509.BasicConstraints)
        is_ca, path_len, bc_critical = bc.value.ca, bc.value.path_length, bc.critical
    except x509.ExtensionNotFound:
        pass
    key_usage: tuple[str, ...] = ()
    ku_critical = None
    try:
        ku = ext.get_extension_for_class(x509.KeyUsage)
        ku_critical = ku.critical
        key_usage = tuple(
            _camel(flag) for flag in _KEY_USAGE_FLAGS if getattr(ku.value, flag)
        )
    except x509.ExtensionNotFound:
        pass
    eku: tuple[str, ...] = ()
    try:
        eku = tuple(
            _EKU_NAMES.get(oid, oid.dotted_string)
            for oid in ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
    except x509.ExtensionNotFound:
        pass
    ski = aki = None
    try:
        ski = _hex(ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    except x509.ExtensionNotFound:
        pass
    try:
        aki_value = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        aki = _hex(aki_value) if aki_value else None
    except x509.ExtensionNotFound:
        pass
    constraints = None
    try:
        nc = ext.get_extension_for_class(x509.NameConstraints).value
        permitted = nc.permitted_subtrees or []
        constraints = NameConstraints(
            dns=tuple(g.value for g in permitted if isinstance(g, x509.DNSName)),
            uri_hosts=tuple(g.value for g in permitted if isinstance(g, x509.UniformResourceIdentifier)),
            ip=tuple(g.value for g in permitted if isinstance(g, x509.IPAddress)),  # type: ignore[misc]
        )
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else None
    sig_hash = cert.signature_hash_algorithm
    public_key = cert.public_key()
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        common_name=common_name,
        issuer=cert.issuer.rfc4514_string(),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sans=tuple(sans),
        key_type=describe_key(public_key),
        signature_algorithm=(
            f"{type(public_key).__name__.replace('PublicKey', '')}-{sig_hash.name}" if sig_hash else "ed25519"
        ),
        is_ca=is_ca,
        path_len=path_len,
        key_usage=key_usage,
        extended_key_usage=eku,
        fingerprint_sha256=_hex(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()),
        subject_key_id=ski,
        authority_key_id=aki,
        self_signed=cert.issuer == cert.subject,
        has_san_extension=has_san,
        basic_constraints_critical=bc_critical,
        key_usage_critical=ku_critical,
        name_constraints=constraints,
    )


def _camel(flag: str) -> str:
    head, *rest = flag.split("_")
    return head + "".join(word.capitalize() for word in rest)


def fully_parsed(certificate: x509.Certificate) -> x509.Certificate:
    """``certificate``, after reading every field grpcpki looks at; ValueError if one is damaged.

    cryptography parses names, extensions and the key lazily, so a damaged field would otherwise
    raise a bare ValueError later, wherever it is first read (an "unexpected error").
    """
    _ = (certificate.issuer, certificate.subject, certificate.extensions, certificate.public_key(),
         certificate.signature_hash_algorithm, certificate.not_valid_before_utc, certificate.not_valid_after_utc)
    return certificate


def load_certificates(pem: bytes, *, source: str = "input") -> list[x509.Certificate]:
    """Every certificate in a PEM blob, in order; PemError if there is none."""
    if b"-----BEGIN" not in pem:
        raise PemError(
            f"{source} is not a PEM file",
            "expected '-----BEGIN CERTIFICATE-----' (convert DER with: openssl x509 -inform der -in FILE)",
        )
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        what = "a private key" if b"PRIVATE KEY-----" in pem else "no certificate"
        raise PemError(f"{source} holds {what}, not a certificate", "point at the .crt / cert.pem file")
    try:
        return [fully_parsed(c) for c in x509.load_pem_x509_certificates(pem)]
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PemError(f"{source} has a damaged certificate: {exc}", "re-export or reissue it") from None


def cert_info(pem: bytes) -> CertInfo:
    """Facts about the first certificate in ``pem``."""
    return info_from_certificate(load_certificates(pem)[0])


def cert_infos(pem: bytes, *, source: str = "input") -> list[CertInfo]:
    """Facts about every certificate in ``pem`` (a chain or a trust bundle), in order."""
    return [info_from_certificate(c) for c in load_certificates(pem, source=source)]


def cert_file_info(path: Path, what: str = "certificate") -> CertInfo:
    """Facts about the first certificate in the file at ``path``."""
    return cert_infos(read_file(path, what), source=str(path))[0]


def certificates_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def check_key_pair(chain_pem: bytes, key_pem: bytes, passphrase: bytes | None = None) -> None:
    """Raise unless ``key_pem`` is the private key of the first certificate in ``chain_pem``.

    gRPC reports a mismatch as 'Failed to bind to address' (server) or 'Failed to create
    security handshaker' (client) (docs/failures.md#key-mismatch-at-bind); checking first lets us say what it is.
    """
    cert = load_certificates(chain_pem, source="certificate")[0]
    key = load_private_key(key_pem, passphrase, source="private key")
    if public_key_bytes(key) != public_key_bytes(cert.public_key()):  # type: ignore[arg-type]
        raise KeyMismatchError(
            f"the private key does not belong to the certificate {cert.subject.rfc4514_string()}",
            "pair each certificate with the key it was issued for (reissue with `grpcpki issue` if the key is lost)",
        )


@dataclass(frozen=True)
class Leaf:
    """An issued leaf certificate: PEM bytes and facts. ``chain_pem`` is what a peer presents."""

    role: Role
    name: str
    cert_pem: bytes
    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    info: CertInfo


class CA:
    """A certificate authority held in memory (root or intermediate).

    >>> ca = CA.create("Example CA")
    >>> server = ca.issue(Role.SERVER, "localhost")
    >>> client = ca.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    """

    def __init__(
        self, certificate: x509.Certificate, key: PrivateKey, parents: Sequence[x509.Certificate] = ()
    ) -> None:
        if public_key_bytes(key) != public_key_bytes(certificate.public_key()):  # type: ignore[arg-type]
            raise KeyMismatchError(
                "the CA key does not belong to the CA certificate", "restore the matching ca.key from backup"
            )
        self._cert = certificate
        self._key = key
        # Issuers above this CA, nearest first, ending at the root.
        self._parents = tuple(parents)
        self.info = info_from_certificate(certificate)
        self._signature_algorithms: dict[type, str] = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str = "grpcpki CA",
        *,
        org: str | None = None,
        key_type: KeyType = KeyType.ECDSA_P256,
        days: int = profiles.DEFAULT_CA_DAYS,
        path_len: int | None = None,
        constraints: NameConstraints | None = None,
        now: datetime | None = None,
        key: PrivateKey | None = None,
    ) -> CA:
        """A new self-signed root CA (with ``key`` if given, e.g. one on a PKCS#11 token)."""
        key = key if key is not None else generate_key(key_type)
        subject = _name(name, org)
        start = _now(now) - profiles.BACKDATE
        cert = _build_ca_cert(subject, subject, key, key, start, start + timedelta(days=days), path_len, constraints)
        return cls(cert, key)

    @classmethod
    def load(
        cls, cert_pem: bytes, key_pem: bytes, *, passphrase: bytes | None = None, parents_pem: bytes = b""
    ) -> CA:
        cert = load_certificates(cert_pem, source="CA certificate")[0]
        key = load_private_key(key_pem, passphrase, source="CA key")
        parents = load_certificates(parents_pem, source="CA chain") if parents_pem.strip() else []
        return cls(cert, key, parents)

    def create_intermediate(
        self,
        name: str,
        *,
        org: str | None = None,
        key_type: KeyType | None = None,
        days: int = profiles.DEFAULT_INTERMEDIATE_DAYS,
        path_len: int | None = 0,
        constraints: NameConstraints | None = None,
        now: datetime | None = None,
        key: PrivateKey | None = None,
    ) -> CA:
        """A CA signed by this one; leaves it issues are served with the intermediate in their chain."""
        self._check_can_sign(now, issuing_ca=True)
        key = key if key is not None else generate_key(key_type or self.key_type)
        start = _now(now) - profiles.BACKDATE
        end = self._clamp_not_after(start + timedelta(days=days), what="intermediate CA")
        # Constraints are inherited by everything below (RFC 5280 4.2.1.10), so repeat them
        # on the intermediate: some verifiers only read the nearest CA's extension.
        constraints = constraints or self.info.name_constraints
        cert = _build_ca_cert(
            _name(name, org), self._cert.subject, key, self._key, start, end, path_len, constraints,
            issuer_cert=self._cert,
        )
        return CA(cert, key, (self._cert, *self._parents))

    def cross_sign(self, other: CA, *, now: datetime | None = None) -> bytes:
        """Certify ``other``'s key and subject with this CA (for CA rotation): PEM of the cross certificate.

        Peers that trust only this CA can then build new-CA-leaf -> cross -> this CA.
        """
        self._check_can_sign(now, issuing_ca=True)
        source = other._cert
        start = _now(now) - profiles.BACKDATE
        end = self._clamp_not_after(source.not_valid_after_utc, what="cross-signed CA", clamp=True)
        cert = _build_ca_cert(
            source.subject, self._cert.subject, other._key, self._key, start, end,
            other.info.path_len, other.info.name_constraints, issuer_cert=self._cert,
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    # -- facts ------------------------------------------------------------------------
    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def root_pem(self) -> bytes:
        """The trust anchor peers load (the root, even when this CA is an intermediate)."""
        root = self._parents[-1] if self._parents else self._cert
        return root.public_bytes(serialization.Encoding.PEM)

    @functools.cached_property
    def intermediates_pem(self) -> bytes:
        """Certificates a leaf of this CA must be served with: this CA (if not the root) and its parents below the root."""
        # Cached (a CA never changes): a batch appends it to every chain.pem it writes.
        if not self._parents:
            return b""
        return certificates_pem((self._cert, *self._parents[:-1]))

    @functools.cached_property
    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return authority_key_identifier(self._cert)

    @functools.cached_property
    def _signature_hash(self) -> hashes.HashAlgorithm | None:
        # The key never changes, nor the hash it signs with: asked once, not per certificate.
        return signature_hash(self._key)

    @functools.cached_property
    def _authority_key_id_text(self) -> str | None:
        key_id = self._authority_key_id.key_identifier
        return _hex(key_id) if key_id else None

    def _signature_algorithm(self, subject_key_class: type) -> str:
        """CertInfo.signature_algorithm of a leaf this CA signs for a key of that class
        (info_from_certificate's words), worked out once per class."""
        names = self._signature_algorithms
        name = names.get(subject_key_class)
        if name is None:
            sig_hash = self._signature_hash
            name = names[subject_key_class] = (
                f"{subject_key_class.__name__.replace('PublicKey', '')}-{sig_hash.name}" if sig_hash else "ed25519"
            )
        return name

    @property
    def parents_pem(self) -> bytes:
        return certificates_pem(self._parents)

    @property
    def key_type(self) -> KeyType:
        return key_type_of(self._key) or KeyType.ECDSA_P256

    def private_key_pem(self, passphrase: bytes | None = None) -> bytes:
        return private_key_pem(self._key, passphrase)

    @property
    def key_uri(self) -> str | None:
        """The PKCS#11 URI of the CA key when it lives on a token (engine/hsm.py), else None."""
        uri = getattr(self._key, "uri", None)
        return str(uri) if uri is not None else None

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        """Sign a CRL with this CA's key, wherever it lives (a file's key or a token's)."""
        return builder.sign(self._key, signature_hash(self._key))  # type: ignore[arg-type]

    # -- issuance -----------------------------------------------------------------------
    def issue(
        self,
        role: Role,
        name: str,
        *,
        sans: Iterable[str | San] = (),
        days: int = profiles.DEFAULT_LEAF_DAYS,
        key_type: KeyType | None = None,
        key_pem: bytes | None = None,
        public_key: PublicKey | None = None,
        also_client: bool = False,
        also_server: bool = False,
        name_as_san: bool = True,
        now: datetime | None = None,
    ) -> Leaf:
        """Issue a server or client certificate.

        A server ``name`` that is a hostname or IP becomes a SAN too; ``localhost`` also gets
        127.0.0.1 and ::1, because gRPC checks IP targets only against IP SANs (docs/failures.md#hostname-mismatch).
        ``key_pem`` reuses an existing key (renewal with ``--keep-key``); ``public_key`` certifies
        a key this CA never sees (a CSR's, engine/csr.py), and the Leaf then has an empty key_pem.
        """
        role = Role(role)
        final_sans = leaf_sans(name, sans, name_as_san=name_as_san)
        if self.info.name_constraints is not None:
            self.info.name_constraints.check(final_sans)
        self._check_can_sign(now)
        start = _now(now) - profiles.BACKDATE
        requested_end = start + profiles.BACKDATE + timedelta(days=days)
        end = self._clamp_not_after(requested_end, what="certificate")
        key: PrivateKey | None = None
        new_key_type = (key_type or KeyType.ECDSA_P256) if public_key is None and key_pem is None else None
        if new_key_type is not None:
            key = generate_key(new_key_type)
        elif public_key is None and key_pem is not None:
            key = load_private_key(key_pem, source="existing key")
        subject_key = public_key if public_key is not None else key.public_key()  # type: ignore[union-attr]
        # A key made here is of the type asked for: KeyType's values are describe_key's words for it.
        key_words = new_key_type.value if new_key_type is not None else describe_key(subject_key)
        subject = _name(name, None)
        serial = x509.random_serial_number()
        # The profile's extensions are immutable values, built once per kind of leaf (_leaf_key_usage, _leaf_eku).
        rsa_key = new_key_type.is_rsa if new_key_type is not None else isinstance(subject_key, rsa.RSAPublicKey)
        key_usage, key_usage_names = _leaf_key_usage(role, rsa_key)
        eku, eku_names = _leaf_eku(role, also_client, also_server, any(s.is_spiffe for s in final_sans))
        ski = x509.SubjectKeyIdentifier.from_public_key(subject_key)
        aki = self._authority_key_id
        sig_hash = self._signature_hash
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(subject_key)
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(_LEAF_BASIC_CONSTRAINTS, critical=True)
            .add_extension(key_usage, critical=True)  # RFC 5280 4.2.1.3: SHOULD be critical
            .add_extension(eku, critical=False)  # critical EKU breaks some Java and Windows verifiers
            .add_extension(x509.SubjectAlternativeName([_general_name(s) for s in final_sans]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(aki, critical=False)
        )
        cert = builder.sign(self._key, sig_hash)  # type: ignore[arg-type]
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        # The inventory row's facts come from the values just signed, not from parsing the new
        # DER back (info_from_certificate was ~13% of a batch apply: bench/apply.py).
        # tests/engine/test_leaf_info.py proves both give the same CertInfo for every profile.
        subject_text = _leaf_subject_text(subject, name)
        info = CertInfo(
            subject=subject_text,
            common_name=name,
            issuer=self.info.subject,
            serial=serial,
            # X.509 times have whole seconds (RFC 5280 4.1.2.5): what the certificate says.
            not_before=start.astimezone(UTC).replace(microsecond=0),
            not_after=end.astimezone(UTC).replace(microsecond=0),
            sans=tuple(s for s in final_sans if s.kind in ("dns", "ip", "uri")),
            key_type=key_words,
            signature_algorithm=self._signature_algorithm(type(subject_key)),
            is_ca=False,
            path_len=None,
            key_usage=key_usage_names,
            extended_key_usage=eku_names,
            fingerprint_sha256=_pem_fingerprint(cert_pem),
            subject_key_id=_hex(ski.digest),
            authority_key_id=self._authority_key_id_text,
            # A leaf's subject is one RDN holding its CN, so it equals the CA's subject exactly when
            # their RFC 4514 texts are equal (cryptography's, or _leaf_subject_text's same words).
            self_signed=subject_text == self.info.subject,
            has_san_extension=True,
            basic_constraints_critical=True,
            key_usage_critical=True,
        )
        return Leaf(
            role=role,
            name=name,
            cert_pem=cert_pem,
            chain_pem=cert_pem + self.intermediates_pem,
            key_pem=private_key_pem(key) if key is not None else b"",
            info=info,
        )

    # -- internals ----------------------------------------------------------------------
    def _check_can_sign(self, now: datetime | None, *, issuing_ca: bool = False) -> None:
        info = self.info
        if not info.is_ca or (info.key_usage and "keyCertSign" not in info.key_usage):
            raise CannotSignError(
                f"{info.subject} is not a CA certificate (basicConstraints CA:TRUE with keyCertSign)",
                "point grpcpki at a CA made with `grpcpki init-ca`",
            )
        moment = _now(now)
        if moment >= info.not_after:
            raise CannotSignError(
                f"the CA {info.subject} expired on {info.not_after:%Y-%m-%d}",
                "rotate it with `grpcpki ca rotate begin`",
            )
        if issuing_ca and info.path_len == 0:
            raise CannotSignError(
                f"the CA {info.subject} has pathLenConstraint 0 and cannot sign another CA",
                "create the intermediate from the root, or a root with --path-len 1",
            )

    def _clamp_not_after(self, requested: datetime, *, what: str, clamp: bool = False) -> datetime:
        ca_end = self.info.not_after
        if requested <= ca_end:
            return requested
        if clamp:
            return ca_end
        # RFC 5280 does not forbid it, but Go, BoringSSL and cryptography reject a chain where a
        # leaf outlives its issuer once the issuer expires; refuse rather than issue a time bomb.
        days_left = max((ca_end - datetime.now(UTC)).days, 0)
        raise ValidityError(
            f"the {what} would be valid until {requested:%Y-%m-%d}, past the CA's expiry on {ca_end:%Y-%m-%d}",
            f"use --days {days_left} or less, or rotate the CA with `grpcpki ca rotate begin`",
        )


def _name(common_name: str, org: str | None) -> x509.Name:
    # cryptography raises a bare ValueError past 64 characters: say which field, and the limit.
    validate_common_name(common_name, "common name")
    if org is not None:
        validate_common_name(org, "organization (--org)")
    attributes = []
    if org:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


# Every leaf's basicConstraints (CA:FALSE): one immutable value shared by all of them.
_LEAF_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
# The characters of a certificate name (names.validate_cert_name): none of them is escaped in an
# RFC 4514 string (section 2.4 escapes '"+,;<>\\', NUL, a leading '#' or space, a trailing space).
_PLAIN_DN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@")


@functools.cache
def _leaf_key_usage(role: Role, rsa_key: bool) -> tuple[x509.KeyUsage, tuple[str, ...]]:
    """A leaf profile's keyUsage extension, and its flags as CertInfo names them; made once per
    profile and key family (a batch of 10,000 asked for the same two values 10,000 times)."""
    key_usage = _key_usage_for(profiles.LEAF_PROFILES[role], rsa_key)
    return key_usage, tuple(_camel(flag) for flag in _KEY_USAGE_FLAGS if getattr(key_usage, flag))


@functools.cache
def _leaf_eku(role: Role, also_client: bool, also_server: bool, svid: bool) -> tuple[x509.ExtendedKeyUsage, tuple[str, ...]]:
    """A leaf's extendedKeyUsage extension (profiles.leaf_eku_oids) and its names, made once per case."""
    oids = profiles.leaf_eku_oids(role, also_client=also_client, also_server=also_server, svid=svid)
    return x509.ExtendedKeyUsage(oids), tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in oids)


def _leaf_subject_text(subject: x509.Name, common_name: str) -> str:
    """``subject.rfc4514_string()`` of a leaf's CN-only subject (what ``_name(NAME, None)`` makes),
    written directly when NAME has no character RFC 4514 escapes (cryptography's own call costs
    ~1.5 us a certificate: it formats the OID's dotted string even for a known OID)."""
    if common_name and _PLAIN_DN_CHARS.issuperset(common_name):
        return f"CN={common_name}"
    return subject.rfc4514_string()


def _pem_fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint (uppercase hex with colons) of the one certificate in ``cert_pem``,
    from the DER inside it: ``Certificate.fingerprint`` encodes the DER again (~6 us; this ~2 us)."""
    der = binascii.a2b_base64(cert_pem[_PEM_HEAD:-_PEM_TAIL])  # line breaks are skipped (RFC 7468)
    return _hex(hashlib.sha256(der).digest())


_PEM_HEAD = len(b"-----BEGIN CERTIFICATE-----\n")
_PEM_TAIL = len(b"-----END CERTIFICATE-----\n")


def _general_name(san: San) -> x509.GeneralName:
    if san.kind == "dns":
        return x509.DNSName(san.value)
    if san.kind == "ip":
        return x509.IPAddress(ipaddress.ip_address(san.value))
    return x509.UniformResourceIdentifier(san.value)


def _key_usage(profile: profiles.Profile, key: PrivateKey | PublicKey) -> x509.KeyUsage:
    """The keyUsage extension a profile (engine/profiles.py) calls for, for this key."""
    return _key_usage_for(profile, isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)))


def _key_usage_for(profile: profiles.Profile, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=profile.digital_signature,
        content_commitment=False,
        key_encipherment=profile.key_encipherment_for_rsa and rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=profile.key_cert_sign,
        crl_sign=profile.crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI pointing at ``issuer``: its SKI when it has one (RFC 5280 4.2.1.1), else derived from its key."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


def _build_ca_cert(
    subject: x509.Name,
    issuer: x509.Name,
    subject_key: PrivateKey,
    signing_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    path_len: int | None,
    constraints: NameConstraints | None,
    *,
    issuer_cert: x509.Certificate | None = None,
) -> x509.Certificate:
    public_key = subject_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(_key_usage(profiles.ROOT, subject_key), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    # A self-signed root's AKI equals its SKI; including it keeps OpenSSL's chain builder happy.
    builder = builder.add_extension(
        authority_key_identifier(issuer_cert)
        if issuer_cert is not None
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
        critical=False,
    )
    if constraints is not None and not constraints.empty:
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in constraints.dns]
        permitted += [x509.UniformResourceIdentifier(u) for u in constraints.uri_hosts]
        permitted += [x509.IPAddress(n) for n in constraints.ip]
        # RFC 5280 4.2.1.10 says MUST be critical; Go and BoringSSL enforce it either way.
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True
        )
    return builder.sign(signing_key, signature_hash(signing_key))  # type: ignore[arg-type]
