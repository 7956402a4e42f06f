"""The key algorithms grpcpki generates, as names: no cryptography import, so that reading a
manifest or planning ``grpcpki apply`` does not pay for it (issue 10). Keys themselves are made
in :mod:`grpcpki.engine.keys`, which re-exports :class:`KeyType`."""

from __future__ import annotations

import enum


class KeyType(enum.StrEnum):
    """Key algorithms a certificate can carry. ECDSA P-256 is the default: every gRPC stack
    (BoringSSL, Go, Java, grpc-js/OpenSSL) handles it, and it is fast to generate and sign."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    # Ed25519: Go and BoringSSL accept it in TLS 1.3, but Java's default providers and some
    # grpc-js/OpenSSL builds do not; offered for homogeneous fleets, never the default.
    ED25519 = "ed25519"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")


__all__ = ["KeyType"]
