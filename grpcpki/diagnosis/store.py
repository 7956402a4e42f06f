"""Doctor for a whole PKI directory, one inventory name, or loose files: the loops around
:mod:`grpcpki.diagnosis.doctor`, kept here so that ``grpcpki doctor`` stays a thin layer.

Each thing looked at becomes a :class:`Checked`: what it is, which files, and the doctor's
findings (the stable ids of :mod:`grpcpki.diagnosis.findings`). No network, no click/rich/grpc.

What a whole-PKI check covers:

* every active leaf in the inventory, for its role, against the PKI's trust bundle, with the
  PKI's intermediates as ``known_cas`` (so a ``chain.pem`` without its intermediate is named
  ``missing-intermediate``, not just "untrusted");
* for a server without ``host``: every DNS and IP SAN the inventory recorded for it must be in
  the certificate on disk (a file replaced by hand shows up as ``name-mismatch``);
* every active CA certificate and key: PEM, key pair, key permissions, validity. An encrypted
  CA key is how it should be: without the passphrase it is reported as ``key-encrypted`` at
  *info* level (with the passphrase, it is also checked to decrypt);
* the trust bundle ``ca.crt``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grpcpki.diagnosis import doctor
from grpcpki.diagnosis.findings import Finding, Severity, Source

from grpcpki.diagnosis.facts import is_ca as _is_ca
from grpcpki.diagnosis.fixes import issue_command
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.storage import read_file

if TYPE_CHECKING:
    from grpcpki.engine.errors import NotFoundError
    from grpcpki.engine.inventory import Record
    from grpcpki.engine.pki import Material, Pki

__all__ = [
    "Checked",
    "doctor_files",
    "doctor_material",
    "doctor_record",
    "doctor_pki",
    "guess_role",
    "known_cas",
    "owners",
    "pki_crl",
    "preflight",
    "revoked_instead",
    "server_hosts",
]

# A CA rotation needs the new root on every peer before the old one expires: warn earlier
# than for leaves (doctor's leaf window is min(30 days, a third of the lifetime)).
CA_EXPIRY_WINDOW = dt.timedelta(days=90)


@dataclass(frozen=True)
class Checked:
    """One certificate (or CA, or trust bundle) that doctor looked at, and what it found."""

    name: str
    kind: str  # server | client | root | intermediate | cross | trust-bundle | certificate
    paths: tuple[str, ...]
    findings: tuple[Finding, ...]
    hosts: tuple[str, ...] = ()  # for servers: the names checked against the certificate

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "paths": list(self.paths),
            "hosts": list(self.hosts),
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


def known_cas(pki: Pki) -> list[bytes]:
    """PEM of every intermediate and cross certificate on disk, all generations.

    Roots are left out on purpose: a root missing from ``ca.crt`` is an untrusted chain, not a
    missing intermediate.
    """
    out: list[bytes] = []
    for pattern in ("g*/intermediate.crt", "g*/cross.crt"):
        for path in sorted((pki.path / "ca").glob(pattern)):
            try:
                out.append(read_file(path, "CA certificate"))
            except GrpcpkiError:
                continue
    return out


def server_hosts(sans: Iterable[str]) -> list[str]:
    """The names clients can dial, from SAN strings (``DNS:x``, ``IP:y``; URIs are not dialed).

    Wildcards are skipped: they are not a name anyone dials, and the verifier refuses them
    as a reference identity (RFC 6125 §6.4.3 applies wildcards to presented identifiers only).
    """
    hosts: list[str] = []
    for san in sans:
        kind, _, value = str(san).partition(":")
        kind = kind.lower()
        if kind == "dns" and value and not value.startswith("*."):
            hosts.append(value)
        elif kind == "ip" and value:
            hosts.append(str(ipaddress.ip_address(value)))
    return list(dict.fromkeys(hosts))


def _merge(runs: Iterable[list[Finding]]) -> tuple[Finding, ...]:
    seen: set[Finding] = set()
    out: list[Finding] = []
    for findings in runs:
        for f in findings:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return tuple(out)


def _check_leaf(
    cert: Source,
    key: Source | None,
    *,
    role: str | None,
    trust: Source | None,
    hosts: Sequence[str],
    passphrase: bytes | None,
    known: Sequence[bytes],
    now: dt.datetime | None,
    name: str | None,
    managed: bool = False,
    crl: Source | None = None,
) -> tuple[Finding, ...]:
    common = {
        "role": role, "trust": trust, "passphrase": passphrase, "known_cas": known, "now": now, "name": name,
        "managed": managed, "crl": crl,
    }
    if role != "server" or not hosts:
        return _merge([doctor.check_material(cert, key, **common)])  # type: ignore[arg-type]
    # One full check for the first name, and only the name check for the others (the rest
    # would repeat the same findings).
    runs = [doctor.check_material(cert, key, host=hosts[0], **common)]  # type: ignore[arg-type]
    for host in hosts[1:]:
        runs.append(
            [
                f
                for f in doctor.check_material(cert, None, host=host, role=role, now=now, name=name, managed=managed)
                if f.id == "name-mismatch"
            ]
        )
    return _merge(runs)


def doctor_files(
    cert: Source,
    key: Source | None = None,
    *,
    ca: Source | None = None,
    role: str | None = None,
    host: str | None = None,
    passphrase: bytes | None = None,
    known: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    name: str | None = None,
    crl: Source | None = None,
) -> Checked:
    """Loose files: ``cert`` (a chain, leaf first), its ``key``, and ``ca``, the bundle the peer
    verifies this certificate with (in a one-CA PKI, the ``ca.crt`` both sides load); ``crl``, a
    CRL to look it up in."""
    findings = _check_leaf(
        cert, key, role=role, trust=ca, hosts=[host] if host else [], passphrase=passphrase,
        known=known, now=now, name=name, crl=crl,
    )
    paths = tuple(os.fspath(p) for p in (cert, key, ca) if p is not None and not isinstance(p, bytes))
    return Checked(name or _first_path(cert), role or "certificate", paths, findings, (host,) if host else ())


def guess_role(cert: Source) -> str | None:
    """``server`` or ``client`` from the leaf's extendedKeyUsage; None when it does not say
    (no EKU, or unreadable: the doctor reports that). A certificate with both usages is a server
    when it names a host (DNS/IP SAN) and a client otherwise: mkcert -client writes both EKUs and
    no host name, and checking it as a server would fail it for a name it never claimed."""
    from grpcpki.diagnosis.fixes import cert_role
    from grpcpki.diagnosis.material import load_certs

    certs, _ = load_certs(cert, "chain", "the certificate")
    leaves = [c for c in certs if not _is_ca(c)] or certs
    return cert_role(leaves[0]) if leaves else None


def _first_path(cert: Source) -> str:
    return "the certificate" if isinstance(cert, bytes) else os.fspath(cert)


def doctor_material(
    material: Material,
    *,
    host: str | None = None,
    known: Sequence[bytes] = (),
    now: dt.datetime | None = None,
    sans: Sequence[str] | None = None,
    crl: Source | None = None,
) -> Checked:
    """One inventory name, as ``pki.material(NAME)`` describes it. A server is checked for
    ``host``, else for every DNS/IP name in ``sans`` (default: the certificate's own SANs)."""
    role = material.role.value
    hosts = [host] if host else server_hosts(sans if sans is not None else [str(s) for s in material.info.sans])
    findings = _check_leaf(
        material.chain_path, material.key_path, role=role, trust=material.trust_path,
        hosts=hosts if role == "server" else [], passphrase=None, known=known, now=now, name=material.name,
        managed=True, crl=crl,
    )
    paths = (str(material.chain_path), str(material.key_path), str(material.trust_path))
    return Checked(material.name, role, paths, findings, tuple(hosts) if role == "server" else ())


def _leaf_from_record(
    pki: Pki, record: Record, *, host: str | None, known: Sequence[bytes], now: dt.datetime | None, crl: Source | None
) -> Checked:
    role = record.kind
    # The names the inventory says this server was issued for: a file replaced by hand
    # (or a rotation gone wrong) no longer covers them.
    hosts = ([host] if host else server_hosts(record.sans)) if role == "server" else []
    chain = record.chain_path or pki.leaf_dir(record.name) / "chain.pem"
    # A leaf signed from a CSR (grpcpki sign) has no key in the PKI: nothing to pair-check.
    key = None if _signed_from_csr(record) else record.key_path or pki.leaf_dir(record.name) / "key.pem"
    findings = _check_leaf(
        chain, key, role=role, trust=pki.trust_bundle_path, hosts=hosts, passphrase=None,
        known=known, now=now, name=record.name, managed=True, crl=crl,
    )
    return Checked(record.name, role, tuple(str(p) for p in (chain, key) if p is not None), findings, tuple(hosts))


def _signed_from_csr(record: Record) -> bool:
    return record.key_path is None and record.status == "active"


def doctor_record(
    pki: Pki, record: Record, *, host: str | None = None, known: Sequence[bytes] = (), now: dt.datetime | None = None,
    crl: Source | None = None,
) -> Checked:
    """One inventory row, including one signed from a CSR (no key in the PKI to check)."""
    return _leaf_from_record(pki, record, host=host, known=known, now=now, crl=crl)


def _ca_validity(cert_pem: bytes, subject: str, *, now: dt.datetime) -> list[Finding]:
    from grpcpki.engine.certs import cert_info

    info = cert_info(cert_pem)
    what = info.subject
    if now >= info.not_after:
        return [
            Finding(
                "expired",
                Severity.ERROR,
                f"CA certificate {what} expired on {info.not_after:%Y-%m-%d %H:%M} UTC; nothing it issued verifies.",
                "start a CA rotation: grpcpki ca rotate begin",
                subject,
            )
        ]
    if now < info.not_before:
        return [
            Finding(
                "not-yet-valid",
                Severity.ERROR,
                f"CA certificate {what} is not valid until {info.not_before:%Y-%m-%d %H:%M} UTC; a clock is wrong.",
                "check this machine's clock (timedatectl status)",
                subject,
            )
        ]
    window = min(CA_EXPIRY_WINDOW, (info.not_after - info.not_before) / 3)
    if info.not_after - now <= window:
        days = (info.not_after - now).days
        return [
            Finding(
                "expiring-soon",
                Severity.WARNING,
                f"CA certificate {what} expires on {info.not_after:%Y-%m-%d} UTC, in {days} days; "
                "every peer needs the next root before then.",
                "start a CA rotation: grpcpki ca rotate begin",
                subject,
            )
        ]
    return []


def _ca_key_findings(key: Path, cert: Path, passphrase: bytes | None, pki_path: Path) -> list[Finding]:
    if key.name.endswith(".key.uri"):
        # The key is on a PKCS#11 token (engine/hsm.py) and the file holds only its URI; doctor
        # does not log in to tokens, and the next signing command checks the key pair there.
        return []
    findings = doctor.check_key_file(key, cert=cert, passphrase=passphrase)
    out: list[Finding] = []
    for f in findings:
        if f.id == "key-encrypted":
            # An encrypted CA key is the recommended state (init-ca --encrypt); doctor does not
            # prompt, so without a passphrase only the encryption itself is reported.
            f = dataclasses.replace(
                f,
                severity=Severity.INFO,
                message=f"{key} is encrypted; its passphrase was not checked "
                "(set GRPCPKI_PASSPHRASE or --passphrase-file to check it).",
                fix=None,
            )
        elif f.id == "key-weak-kdf":
            # A CA key has its own safe fix: rewritten in place, atomically, same passphrase, current KDF.
            f = dataclasses.replace(f, fix=reencrypt_command(pki_path))
        out.append(f)
    return out


def reencrypt_command(pki_path: Path) -> str:
    return f"grpcpki --pki {shlex.quote(str(pki_path))} ca reencrypt"


def _doctor_cas(pki: Pki, *, passphrase: bytes | None, now: dt.datetime) -> list[Checked]:
    out: list[Checked] = []
    order = {"root": 0, "intermediate": 1, "cross": 2}
    records = sorted(pki.ca_records(), key=lambda r: (r.ca_generation or 1, order.get(r.kind, 3)))
    for record in records:
        if record.status != "active" or record.cert_path is None:
            continue
        cert = record.cert_path
        findings = doctor.check_pem_file(cert, "certificate")
        if not doctor.has_errors(findings):
            findings += _ca_validity(read_file(cert, "CA certificate"), str(cert), now=now)
        if record.key_path is not None:
            findings += _ca_key_findings(record.key_path, cert, passphrase, pki.path)
        paths = tuple(str(p) for p in (cert, record.key_path) if p is not None)
        out.append(Checked(f"{record.name} (g{record.ca_generation or 1})", record.kind, paths, _merge([findings])))
    bundle = pki.trust_bundle_path
    out.append(
        Checked(
            "trust bundle",
            "trust-bundle",
            (str(bundle),),
            _merge([doctor.check_trust_bundle(bundle, now=now, expiry_window=None)]),
        )
    )
    return out


def doctor_pki(
    pki: Pki,
    *,
    now: dt.datetime | None = None,
    host: str | None = None,
    passphrase: bytes | None = None,
    crl: Source | None = None,
) -> list[Checked]:
    """Every active leaf of the inventory, then the CA certificates and keys, then ``ca.crt``.

    ``host``: check every server certificate for this name (else for the names each was issued
    for). ``passphrase``: also check that it decrypts encrypted CA keys. ``crl``: the CRL to look
    leaves up in (default: the PKI's own crl.pem, when ``grpcpki revoke`` has written one).
    """
    moment = now or dt.datetime.now(dt.UTC)
    known = known_cas(pki)
    crl = crl if crl is not None else pki_crl(pki)
    from grpcpki.engine.consistency import made_elsewhere

    records = pki.records()
    # On a shared inventory another operator's certificates have their files in their PKI
    # directory: `doctor --store` names them; only this directory's are checked here.
    elsewhere = made_elsewhere(pki, records)
    checked = [
        _leaf_from_record(pki, r, host=host, known=known, now=moment, crl=crl) for r in records if r.id not in elsewhere
    ]
    return checked + _doctor_cas(pki, passphrase=passphrase, now=moment)


def owners(pki: Pki) -> dict[str, str]:
    """Serial (lowercase hex) -> inventory name of every active leaf: tells a certificate seen on the
    wire or in a file apart from the inventory's own, for which a fix may suggest ``--replace``."""
    return {r.serial.lower().replace(":", ""): r.name for r in pki.records()}


def pki_crl(pki: Pki) -> Path | None:
    """The PKI's own CRL (written by ``grpcpki revoke``), if there is one."""
    from grpcpki.engine.revocation import crl_path

    path = crl_path(pki.path)
    return path if path.is_file() else None


def preflight(chain_pem: bytes, role: str, *, now: dt.datetime | None = None) -> list[Finding]:
    """What a peer will refuse about the certificate a Greeter side is about to present (expired,
    not made for ``role``...): the doctor's errors on it, so ``serve``/``greet`` warn before the
    first handshake fails, in the doctor's words and with its fix."""
    return [f for f in doctor.check_material(chain_pem, role=role, now=now) if f.severity is Severity.ERROR]


def revoked_instead(pki: Pki, name: str) -> NotFoundError | None:
    """For ``--name NAME`` whose only certificate was revoked: the error that says so (and how to get
    a new one), rather than 'no active certificate'. None when NAME was never revoked."""
    from grpcpki.engine.errors import NotFoundError

    revoked = pki.inventory.query(kinds=("server", "client"), statuses=("revoked",), name=name)
    if not revoked:
        return None
    record = revoked[-1]
    when = f" on {record.revoked_at:%Y-%m-%d %H:%M}Z" if record.revoked_at else ""
    # A revoked certificate's name is free again: a plain `issue` makes the new one, nothing is replaced.
    command = issue_command(record.kind, name, record.sans)
    return NotFoundError(
        f"{name!r} has no active certificate: its last one (serial {record.serial}) was revoked{when}",
        f"a revoked certificate cannot be renewed; issue a new one: `{command}`",
    )
