"""The doctor: everything that can be checked offline about certificate material, with no network.

Entry points take a :data:`~grpcpki.diagnosis.findings.Source` (PEM/DER bytes or a path) and return
:class:`~grpcpki.diagnosis.findings.Finding` lists; file-level checks (permissions, unreadable
file) run for paths only. The work is done by one module per concern:

* :mod:`.material`: reading files as any tool lays them out;
* :mod:`.certificate`: one certificate (validity, strength, SANs/EKU/keyUsage for its role);
* :mod:`.chain`: chain order, each link to a trust anchor, the trust bundle;
* :mod:`.fixes`: the command each finding suggests (safe to run as printed).

The chain checks are explanations first: each failure gets its own finding naming the
certificate and the reason. Then the chain is run through ``cryptography.x509.verification``
(the webpki profile, stricter than any gRPC stack); if that verifier still refuses and no
finding explains why, ``chain-rejected`` carries its reason as a warning: what only webpki
refuses, grpcio, Go and grpc-js accept (docs/failures.md#chain-rejected).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from grpcpki.diagnosis.certificate import profile_findings, strength_findings, validity_findings
from grpcpki.diagnosis.chain import (
    Pool,
    bundle_findings,
    chain_findings,
    order_findings,
    revocation_findings,
    verifier_reason,
)
from grpcpki.diagnosis.facts import describe, is_ca, matches_host, normalise_host, same_public_key, signed_by
from grpcpki.diagnosis.findings import (
    EXPLAINS_REJECTION,
    FINDINGS,
    Finding,
    PemKind,
    RoleName,
    Severity,
    Source,
    dedupe,
    has_errors,
)
from grpcpki.diagnosis.fixes import Owner, name_for, reissue, renew
from grpcpki.diagnosis.spiffe import spiffe_findings
from grpcpki.diagnosis.material import (
    load_certs,
    load_crl,
    load_key,
    parse_known,
    permission_findings,
    source_label,
)
from grpcpki.engine.certs import certificates_pem
from grpcpki.engine.verify import verify_chain

__all__ = [
    "FINDINGS",
    "Finding",
    "Severity",
    "Source",
    "check_key_file",
    "check_material",
    "check_pem_file",
    "check_trust_bundle",
    "has_errors",
    "matches_host",
]


_WEBPKI_ONLY = ("incorrect criticality", "missing required extension", "invalid extension")


def role_name(role: object) -> RoleName | None:
    """``"server"``/``"client"`` from a string or a :class:`~grpcpki.engine.profiles.Role`."""
    if role is None:
        return None
    value = str(getattr(role, "value", role)).lower()
    if value not in ("server", "client"):
        raise ValueError(f"role must be 'server', 'client' or None, not {role!r}")
    return value  # type: ignore[return-value]


def _aware(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def check_pem_file(source: Source, expect: PemKind, *, passphrase: bytes | None = None) -> list[Finding]:
    """Is ``source`` readable PEM holding what it should: one ``certificate``, a ``chain``
    (one or more certificates), a ``bundle`` of CA certificates, or one private ``key``?"""
    subject = source_label(source, "the key" if expect == "key" else f"the {expect}")
    if expect == "key":
        return load_key(source, passphrase, subject)[1] + permission_findings(source, subject)
    return load_certs(source, expect, subject)[1]


def check_key_file(
    key: Source, *, cert: Source | None = None, passphrase: bytes | None = None, name: str | None = None
) -> list[Finding]:
    """A private key file: PEM, one key, decryptable, mode 0600, and (given ``cert``) the
    certificate's key. Works for CA keys as well as leaf keys."""
    subject = source_label(key, "the private key")
    private, findings = load_key(key, passphrase, subject)
    findings += permission_findings(key, subject)
    if private is not None and cert is not None:
        certs, _ = load_certs(cert, "chain", source_label(cert, "the certificate chain"))
        if certs:
            findings += _key_match_findings(certs, private, subject, Owner(name or name_for(certs[0])))
    return findings


def _key_match_findings(certs: list[x509.Certificate], key: PrivateKeyTypes, subject: str, owner: Owner) -> list[Finding]:
    if same_public_key(certs[0], key):
        return []
    if any(same_public_key(c, key) for c in certs[1:]):
        return []  # reported as chain-order
    # gRPC: server start fails with "Failed to bind", a client with "Failed to create security
    # handshaker" (docs/failures.md#local-credentials-unusable).
    return [
        Finding(
            "key-mismatch",
            Severity.ERROR,
            f"{subject} is not the private key of {describe(certs[0])}.",
            f"use the key written with the certificate, or re-issue both: {renew(owner)}",
            subject,
        )
    ]


def check_trust_bundle(
    bundle: Source,
    *,
    peer: Source | None = None,
    role: object = None,
    host: str | None = None,
    known_cas: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    expiry_window: dt.timedelta | None = None,
) -> list[Finding]:
    """A CA bundle: not empty, only CAs, none expired; with ``peer`` (a certificate chain), also
    whether that peer's chain leads to one of its CAs (``role`` is the peer's role)."""
    moment = _aware(now)
    subject = source_label(bundle, "the trust bundle")
    anchors, findings = load_certs(bundle, "bundle", subject)
    findings += bundle_findings(anchors, subject, moment, expiry_window)
    if peer is not None and anchors:
        peer_subject = source_label(peer, "the peer chain")
        chain, peer_findings = load_certs(peer, "chain", peer_subject)
        findings += peer_findings
        if chain:
            leaf = next((c for c in chain if not is_ca(c)), chain[0])
            pool = Pool(chain=chain, trusted=anchors, known=parse_known(known_cas))
            owner = Owner(name_for(leaf), role_name(role))
            findings += chain_findings(pool, leaf, moment, expiry_window, peer_subject, owner, subject)
    return findings


def check_material(
    cert: Source,
    key: Source | None = None,
    *,
    role: object = None,
    trust: Source | None = None,
    host: str | None = None,
    passphrase: bytes | None = None,
    known_cas: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    expiry_window: dt.timedelta | None = None,
    name: str | None = None,
    managed: bool = False,
    crl: Source | None = None,
) -> list[Finding]:
    """Everything that can be checked offline about one identity.

    ``cert``: the certificate chain gRPC loads (leaf first, then intermediates).
    ``key``: its private key. ``role``: ``"server"``, ``"client"`` (or a ``Role``), None to skip
    role checks. ``trust``: the CA bundle the *peer* verifies this certificate with (in a
    one-CA PKI, the same ``ca.pem`` both sides load). ``host``: the name clients dial (server
    role only). ``known_cas``: PEM of CA certificates the PKI knows (its intermediates), used to
    name a missing intermediate. ``name``: the inventory name, used in suggested commands;
    ``managed``: the inventory holds this very certificate under ``name`` (only then may a fix
    suggest ``--replace``). ``crl``: a CRL (PEM or DER) to look the certificate up in.
    """
    role_ = role_name(role)
    moment = _aware(now)
    subject = source_label(cert, "the certificate chain")
    chain, findings = load_certs(cert, "chain", subject)
    leaf: x509.Certificate | None = None
    if chain:
        leaves = [c for c in chain if not is_ca(c)]
        leaf = leaves[0] if leaves else chain[0]

    private: PrivateKeyTypes | None = None
    key_subject = source_label(key, "the private key") if key is not None else ""
    if key is not None:
        private, key_findings = load_key(key, passphrase, key_subject)
        findings += key_findings + permission_findings(key, key_subject)
    if leaf is None:
        return findings
    owner = Owner(name or name_for(leaf), role_, managed=managed and name is not None)
    if private is not None:
        findings += _key_match_findings(chain, private, key_subject, owner)
        keyed = [c for c in chain if same_public_key(c, private)]
        if keyed:
            leaf = keyed[0]

    findings += order_findings(chain, leaf, subject)
    findings += validity_findings(leaf, moment, expiry_window, subject, owner)
    findings += strength_findings(leaf, subject, reissue(owner, leaf))
    findings += profile_findings(leaf, owner, host, subject)
    if crl is not None:
        crl_subject = source_label(crl, "the CRL")
        revocations, crl_findings = load_crl(crl, crl_subject)
        findings += crl_findings
        if revocations is not None:
            findings += revocation_findings(leaf, revocations, crl_subject, subject, owner)

    anchors: list[x509.Certificate] = []
    if trust is not None:
        trust_subject = source_label(trust, "the trust bundle")
        anchors, trust_findings = load_certs(trust, "bundle", trust_subject)
        findings += trust_findings + bundle_findings(anchors, trust_subject, moment, expiry_window)
        if anchors:
            pool = Pool(chain=chain, trusted=anchors, known=parse_known(known_cas))
            findings += chain_findings(pool, leaf, moment, expiry_window, subject, owner, trust_subject)
    findings += spiffe_findings(leaf, _issuers(leaf, chain, anchors), subject, reissue(owner, leaf))
    explained = any(f.id in EXPLAINS_REJECTION and f.severity is not Severity.INFO for f in findings)
    if anchors and role_ is not None and not explained:
        findings += _strict_verifier(leaf, chain, anchors, role_, host, moment, subject, owner)
    return dedupe(findings)


def _issuers(leaf: x509.Certificate, chain: list[x509.Certificate], anchors: list[x509.Certificate]) -> list[x509.Certificate]:
    """The signing certificates above ``leaf``: the rest of its chain file, and the anchors that
    issued any of them."""
    above = [c for c in chain if c is not leaf]
    signed = [leaf, *above]
    return above + [a for a in anchors if a not in above and any(signed_by(c, a) for c in signed)]


def _strict_verifier(
    leaf: x509.Certificate,
    chain: list[x509.Certificate],
    anchors: list[x509.Certificate],
    role: RoleName,
    host: str | None,
    now: dt.datetime,
    subject: str,
    owner: Owner,
) -> list[Finding]:
    ordered = [leaf, *(c for c in chain if c is not leaf)]
    try:
        check = verify_chain(
            certificates_pem(ordered),
            certificates_pem(anchors),
            role,
            host=normalise_host(host) if host else None,
            now=now,
        )
        reason = None if check.ok else verifier_reason(check.detail)
    except ValueError as exc:  # a name the verifier cannot represent
        reason = str(exc)
    if reason is None:
        return []
    # What only the webpki profile insists on (an extension's criticality, an extension gRPC stacks
    # do not require) is a warning; anything else (path length, name constraints...) BoringSSL and
    # Go enforce too (docs/failures.md#chain-rejected).
    strict_only = any(words in reason for words in _WEBPKI_ONLY)
    return [
        Finding(
            "chain-rejected",
            Severity.WARNING if strict_only else Severity.ERROR,
            f"a strict verifier (the webpki profile) rejects {describe(leaf)}: {reason}"
            + ("; grpcio, Go and OpenSSL accept this." if strict_only else "."),
            reissue(owner, leaf),
            subject,
        )
    ]
