"""Sign a certificate signing request (CSR): bring your own key, and it never touches the CA.

The CSR proves its requester holds the private key (its self-signature, PKCS#10 / RFC 2986
section 4.2), and proposes a name and SANs. grpcpki takes nothing else from it: the profile
(engine/profiles.py) decides every extension, so a CSR asking for ``CA:TRUE`` or an extra
usage gets a plain leaf. The proposed names pass the same checks as ``issue`` (the validators
of engine/names.py, then the CA's name constraints when signing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from grpcpki.engine import profiles
from grpcpki.engine.errors import GrpcpkiError, InvalidNameError, NotFoundError, PemError
from grpcpki.engine.inventory import Record
from grpcpki.engine.keys import PublicKey, describe_key, key_type_of
from grpcpki.engine.names import San, parse_san
from grpcpki.engine.pki import Pki
from grpcpki.engine.reissue import IssuePlan


_SAN_PREFIXES = {"DNSName": "dns", "IPAddress": "ip", "UniformResourceIdentifier": "uri"}


class CsrError(PemError):
    """A CSR is not one, is damaged, fails its own signature, or carries a key grpcpki refuses."""


@dataclass(frozen=True)
class CsrInfo:
    """What a CSR asks for (nothing here is trusted until checked)."""

    common_name: str | None
    sans: tuple[San, ...]
    key_type: str
    public_key: PublicKey

    def to_dict(self) -> dict[str, object]:
        return {"common_name": self.common_name, "sans": [str(s) for s in self.sans], "key_type": self.key_type}


def read_csr(pem: bytes, *, source: str = "CSR") -> CsrInfo:
    """Parse and check a PEM CSR: its signature, its key type, the syntax of its names."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem and b"-----BEGIN NEW CERTIFICATE REQUEST-----" not in pem:
        what = ("a certificate" if b"BEGIN CERTIFICATE-----" in pem else
                "a private key" if b"PRIVATE KEY-----" in pem else "no PEM certificate request")
        raise CsrError(
            f"{source} holds {what}, not a certificate signing request",
            "make one with: openssl req -new -key KEY -subj /CN=NAME -out NAME.csr",
        )
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise CsrError(f"{source} is a damaged CSR: {exc}", "make the CSR again") from None
    if not csr.is_signature_valid:
        # The self-signature is the requester's proof of holding the key (RFC 2986 4.2).
        raise CsrError(
            f"{source} fails its own signature check: it was altered, or not signed by the key it carries",
            "make the CSR again with the private key it is for",
        )
    public_key = csr.public_key()
    key_type = key_type_of(public_key)  # type: ignore[arg-type]
    if key_type is None:
        raise CsrError(
            f"{source} carries a {describe_key(public_key)} key, which grpcpki does not certify",
            "use ECDSA P-256 or P-384, RSA 2048/3072/4096, or Ed25519 (every gRPC stack handles P-256)",
        )
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    sans: list[San] = []
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        ext = None
    for general_name in ext or ():
        prefix = _SAN_PREFIXES.get(type(general_name).__name__)
        if prefix is not None:
            try:
                sans.append(parse_san(f"{prefix}:{general_name.value}"))
            except InvalidNameError as exc:
                raise InvalidNameError(f"{source} asks for a bad name: {exc.message}", exc.hint) from None
        else:
            raise InvalidNameError(
                f"{source} asks for a {type(general_name).__name__} SAN, which grpcpki does not certify",
                "ask only for DNS names, IP addresses and URIs (SPIFFE IDs)",
            )
    return CsrInfo(
        common_name=str(cns[0].value) if cns else None, sans=tuple(sans), key_type=key_type.value,
        public_key=public_key,  # type: ignore[arg-type]
    )


def sign_csr(
    pki: Pki, plan: IssuePlan, csr: CsrInfo, *, days: int = profiles.DEFAULT_LEAF_DAYS, now: datetime | None = None,
) -> Record:
    """Sign ``csr``'s key as ``plan`` says (engine/reissue.plan_issue: name, merged SANs, usages)
    and store it like any leaf, without a key.pem; under the PKI lock, refusing if NAME changed."""
    with pki.transaction():
        current = pki.inventory.active_leaf(plan.name, plan.role.value)
        if (current.id if current else None) != (plan.replaces.id if plan.replaces else None):
            raise NotFoundError(
                f"{plan.name!r} changed while this command ran (another grpcpki command issued, reissued or revoked it)",
                "run the command again",
            )
        leaf = pki.signing_ca().issue(
            plan.role, plan.name, sans=plan.sans, days=days, public_key=csr.public_key,
            also_client=plan.also_client, also_server=plan.also_server, name_as_san=plan.name_as_san, now=now,
        )
        return pki.store_leaf(leaf, replaces=plan.replaces)


def csr_name(csr: CsrInfo, name: str | None) -> str:
    """NAME for the inventory: as given, else the CSR's Common Name."""
    if name:
        return name
    if csr.common_name:
        return csr.common_name
    raise GrpcpkiError("the CSR has no Common Name to name the certificate by", "give one with --name NAME")


__all__ = ["CsrError", "CsrInfo", "csr_name", "read_csr", "sign_csr"]