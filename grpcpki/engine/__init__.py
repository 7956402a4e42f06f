"""The grpcpki engine: a typed Python API for a gRPC PKI, with no CLI or gRPC dependency.

In memory, like trustme::

    from grpcpki.engine import CA, Role
    ca = CA.create("Example CA")
    server = ca.issue(Role.SERVER, "localhost")          # DNS:localhost, IP:127.0.0.1, IP:::1
    client = ca.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    server.chain_pem, server.key_pem, ca.root_pem         # what grpc.ssl_server_credentials wants

On disk, with an inventory::

    from grpcpki.engine import Pki
    pki = Pki.init("pki", name="Example CA")
    pki.issue(Role.SERVER, "localhost")
    pki.material("localhost").chain_path
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpcpki._lazy import lazy_exports

# Errors are cheap and needed everywhere (the CLI's error path): import them eagerly.
from grpcpki.engine.errors import (
    AlreadyExistsError,
    AmbiguousNameError,
    CAExistsError,
    CannotSignError,
    GrpcpkiError,
    InvalidNameError,
    InventoryError,
    KeyMismatchError,
    LockTimeoutError,
    NameConstraintError,
    NoCAError,
    NotFoundError,
    PassphraseError,
    PemError,
    ProbeError,
    RotationError,
    StoreError,
    ValidityError,
)

if TYPE_CHECKING:
    from grpcpki.engine.certs import CA, CertInfo, Leaf, cert_info, check_key_pair, load_certificates
    from grpcpki.engine.inventory import Record
    from grpcpki.engine.keys import KeyType
    from grpcpki.engine.names import NameConstraints, San, parse_san, validate_dns_name, validate_spiffe_id
    from grpcpki.engine.pki import Inspection, Material, Pki
    from grpcpki.engine.profiles import Role
    from grpcpki.engine.verify import ChainCheck, verify_chain
    from grpcpki.engine.revocation import CrlSummary, RevokeResult, is_revoked, revoke, revoked_serials, write_crl
    from grpcpki.engine.rotation import (
        BeginResult,
        FinishResult,
        RenewResult,
        RotationStatus,
        begin_rotation,
        finish_rotation,
        renew,
        rotation_status,
    )

# Everything else is imported on first use (PEP 562), so `grpcpki --help` does not pay for
# loading cryptography's x509 machinery.
_EXPORTS: dict[str, str] = {
    "CA": "certs",
    "CertInfo": "certs",
    "Leaf": "certs",
    "cert_info": "certs",
    "check_key_pair": "certs",
    "load_certificates": "certs",
    "Record": "inventory",
    "KeyType": "keys",
    "NameConstraints": "names",
    "San": "names",
    "parse_san": "names",
    "validate_dns_name": "names",
    "validate_spiffe_id": "names",
    "Inspection": "pki",
    "Material": "pki",
    "Pki": "pki",
    "Role": "profiles",
    "ChainCheck": "verify",
    "verify_chain": "verify",
    "CrlSummary": "revocation",
    "RevokeResult": "revocation",
    "is_revoked": "revocation",
    "revoke": "revocation",
    "revoked_serials": "revocation",
    "write_crl": "revocation",
    "BeginResult": "rotation",
    "FinishResult": "rotation",
    "RenewResult": "rotation",
    "RotationStatus": "rotation",
    "begin_rotation": "rotation",
    "finish_rotation": "rotation",
    "renew": "rotation",
    "rotation_status": "rotation",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "CA",
    "AlreadyExistsError",
    "AmbiguousNameError",
    "CAExistsError",
    "CannotSignError",
    "CertInfo",
    "ChainCheck",
    "GrpcpkiError",
    "Inspection",
    "InvalidNameError",
    "InventoryError",
    "KeyMismatchError",
    "LockTimeoutError",
    "KeyType",
    "Leaf",
    "Material",
    "NameConstraintError",
    "NameConstraints",
    "NoCAError",
    "NotFoundError",
    "PassphraseError",
    "PemError",
    "Pki",
    "ProbeError",
    "Record",
    "Role",
    "RotationError",
    "San",
    "StoreError",
    "ValidityError",
    "cert_info",
    "check_key_pair",
    "load_certificates",
    "parse_san",
    "validate_dns_name",
    "validate_spiffe_id",
    "verify_chain",
    # rotation and revocation (issue #5)
    "BeginResult",
    "CrlSummary",
    "FinishResult",
    "RenewResult",
    "RevokeResult",
    "RotationStatus",
    "begin_rotation",
    "finish_rotation",
    "is_revoked",
    "renew",
    "revoke",
    "revoked_serials",
    "rotation_status",
    "write_crl",
]
