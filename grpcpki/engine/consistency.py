"""The store's invariants, checked and (where it is safe) repaired: ``grpcpki doctor --store``.

The write path (journal.py) keeps these true after any crash; this module finds what broke
them anyway: a grpcpki from before the journal, a hand edit, a restore from a partial backup.

Invariants: no journal pending and no temporary file left; every active leaf's cert.pem,
chain.pem and key.pem present, holding the certificate its row names, with the key that
matches it; no certificate file under certs/ without its active row; every archived
certificate is the one its serial names; every revoked serial whose CA is still trusted is in
crl.pem; the issuing CA's certificate and key present and matching; no rotation phase left
half-done by an older grpcpki.

A repair never deletes or replaces a certificate that is in use: it finishes or undoes
interrupted changes, deletes temporary files, records an untracked certificate in the
inventory (so ``revoke`` can find it), removes archive copies that duplicate another
certificate, and re-signs the CRL.

On a shared inventory (PostgreSQL, docs/team.md) each operator's PKI directory keeps the files
of the certificates it made, and each row records that directory as ``HOST:/path`` (revision
0005). Files are checked only for this directory's rows; the others are reported once per
origin, as information, and a repair never touches them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from grpcpki.engine.certs import cert_info, check_key_pair, load_certificates
from grpcpki.engine.errors import GrpcpkiError, PassphraseError
from grpcpki.engine.inventory import NewRecord, Record
from grpcpki.engine.journal import JOURNAL_DIR, TEMP_SUFFIX, pending_journals
from grpcpki.engine.pki import CRL, TRUST_BUNDLE, Pki, pem_fingerprint

LEAF_FILES = ("cert.pem", "chain.pem", "key.pem")

# id -> what it means. Stable: `doctor --store --json` prints them.
STORE_PROBLEMS: dict[str, str] = {
    "store-journal-pending": "a change was interrupted and not yet finished or undone",
    "store-temp-file": "a temporary or backup file left by an interrupted write",
    "store-staging-left": "a half-built PKI left by an interrupted `init-ca --force`",
    "store-file-missing": "a file of an active certificate is missing",
    "store-file-mismatch": "a certificate file holds another certificate than its inventory row",
    "store-key-mismatch": "key.pem does not belong to the active certificate",
    "store-untracked-certificate": "a certificate file under certs/ has no active inventory row",
    "store-archive-mismatch": "an archived certificate is not the one its serial names",
    "store-crl-missing": "a revoked certificate is not listed in crl.pem",
    "store-ca-broken": "the issuing CA's certificate or key is missing or does not match",
    "store-rotation-interrupted": "a CA rotation step of an older grpcpki stopped half-way",
    "store-issued-elsewhere": "certificates another PKI directory on the shared inventory made (its files are there)",
}


@dataclass(frozen=True)
class StoreProblem:
    """One broken invariant: what, where, how to fix it, and whether ``repair_store`` can."""

    id: str
    message: str
    fix: str
    path: str | None = None
    repairable: bool = False
    severity: str = "error"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "path": self.path,
            "repairable": self.repairable,
        }


def check_store(pki: Pki, *, thorough: bool = True) -> list[StoreProblem]:
    """Every broken invariant of ``pki``'s store. ``thorough`` also reads every key and archive
    (the default doctor run skips them: it checks each active certificate's key itself)."""
    problems: list[StoreProblem] = []
    root = pki.path
    problems += _leftovers(root)
    rows = pki.inventory.query(statuses=None)
    elsewhere = made_elsewhere(pki, rows)
    active = [r for r in rows if r.is_leaf and r.status == "active"]
    problems += _active_leaves(pki, [r for r in active if r.id not in elsewhere], thorough=thorough)
    problems += _issued_elsewhere([r for r in active if r.id in elsewhere], elsewhere)
    problems += _untracked(pki, rows)
    if thorough:
        problems += _archives(pki, [r for r in rows if r.id not in elsewhere])
        problems += _issuing_ca(pki)
    problems += _crl(pki, rows)
    problems += _rotation(pki)
    return problems


def made_elsewhere(pki: Pki, rows: list[Record]) -> dict[int, str]:
    """Row id -> origin (``HOST:/path``) of each leaf row another PKI directory made, on a shared
    inventory; empty for an SQLite one. A row from before origins were recorded counts as this
    directory's when its certificate's folder is here, else as made by an unknown directory."""
    inventory = pki.inventory
    if not inventory.shared:
        return {}
    here = inventory.origin_label
    origins = inventory.origins()
    elsewhere: dict[int, str] = {}
    for row in rows:
        if row.id not in origins:
            continue
        origin = origins[row.id]
        if origin is None:
            if row.cert_path is not None and not row.cert_path.parent.is_dir():
                elsewhere[row.id] = UNKNOWN_ORIGIN
        elif origin != here:
            elsewhere[row.id] = origin
    return elsewhere


UNKNOWN_ORIGIN = "another PKI directory (a row from before grpcpki recorded where rows come from)"


# -- the checks ---------------------------------------------------------------------------------------
def _walk_leftovers(root: Path) -> Iterator[Path]:
    """Temp names no journal lists: ``.NAME.ID.tmp`` files, and archive folders built under
    such a name (journal.py's StoreTransaction.archive), which are not walked into."""
    for directory, dirnames, filenames in os.walk(root):
        temps = {d for d in dirnames if d.startswith(".") and d.endswith(TEMP_SUFFIX)}
        dirnames[:] = [d for d in dirnames if d != JOURNAL_DIR and d not in temps]
        for name in sorted(temps):
            yield Path(directory) / name
        for name in filenames:
            if name.startswith(".") and name.endswith((TEMP_SUFFIX, ".bak")):
                yield Path(directory) / name


def _only_second_names(folder: Path) -> bool:
    """Is every file in ``folder`` a hard link with another name (so removing it loses nothing)?"""
    try:
        with os.scandir(folder) as entries:
            return all(e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_nlink > 1
                       for e in entries)
    except OSError:
        return False


def _leftovers(root: Path) -> list[StoreProblem]:
    problems = [
        StoreProblem(
            "store-journal-pending", f"an interrupted change is pending ({path.name})",
            "`grpcpki doctor --store --repair` (or any grpcpki command that changes the PKI) finishes or undoes it",
            str(path), repairable=True,
        )
        for path in pending_journals(root)
    ]
    pending = bool(problems)
    for path in _walk_leftovers(root) if not pending else ():
        # (Temp names listed in a pending journal are the journal's to resolve.)
        if not path.is_dir():
            fix, repairable = ("`grpcpki doctor --store --repair` deletes it (the file it was meant to replace "
                               "is intact)"), True
        elif _only_second_names(path):
            fix, repairable = "`grpcpki doctor --store --repair` deletes it (each file in it has another name)", True
        else:
            # A file whose only name is in here (a copy, or an archive whose journal was deleted
            # after its commit): deleting it would lose it.
            fix, repairable = "move it out of the PKI and inspect it: a file in it exists nowhere else", False
        problems.append(
            StoreProblem("store-temp-file", f"{path.relative_to(root)} was left by an interrupted write", fix,
                         str(path), repairable=repairable, severity="warning")
        )
    for staging in root.parent.glob(f".{root.name}.new-*"):
        problems.append(
            StoreProblem(
                "store-staging-left", f"{staging} is a half-built PKI from an interrupted `init-ca --force`",
                "`grpcpki doctor --store --repair` deletes it (your PKI is the one in place)",
                str(staging), repairable=True, severity="warning",
            )
        )
    return problems


def _active_leaves(pki: Pki, records: list[Record], *, thorough: bool) -> list[StoreProblem]:
    problems: list[StoreProblem] = []
    for record in records:
        renew = f"`grpcpki renew {record.name} --force` issues it again from the CA (nothing in use is lost)"
        # A leaf signed from a CSR (engine/csr.py) has no key in the PKI: two files, not three.
        keyless = record.cert_path is not None and record.chain_path is not None and record.key_path is None
        files = [p for p in (record.cert_path, record.chain_path, record.key_path) if p is not None]
        expected = 2 if keyless else 3
        missing = [p for p in files if not p.is_file()] + ([] if len(files) == expected else [pki.leaf_dir(record.name)])
        if missing:
            problems.append(
                StoreProblem(
                    "store-file-missing",
                    f"{record.kind} {record.name}: {', '.join(str(p) for p in missing)} missing", renew, str(missing[0]),
                )
            )
            continue
        assert record.cert_path and record.chain_path
        for path in (record.cert_path, record.chain_path):
            if pem_fingerprint(_read(path)) != record.fingerprint:
                problems.append(
                    StoreProblem(
                        "store-file-mismatch",
                        f"{record.kind} {record.name}: {path} is not serial {record.serial} of the inventory",
                        renew, str(path),
                    )
                )
                break
        else:
            if thorough and record.key_path is not None:
                try:
                    check_key_pair(_read(record.cert_path), _read(record.key_path))
                except GrpcpkiError:
                    problems.append(
                        StoreProblem(
                            "store-key-mismatch", f"{record.kind} {record.name}: {record.key_path} does not match its certificate",
                            renew, str(record.key_path),
                        )
                    )
    return problems


def _issued_elsewhere(records: list[Record], elsewhere: dict[int, str]) -> list[StoreProblem]:
    by_origin: dict[str, list[Record]] = {}
    for record in records:
        by_origin.setdefault(elsewhere[record.id], []).append(record)
    problems = []
    for origin, group in sorted(by_origin.items()):
        names = ", ".join(f"{r.kind} {r.name}" for r in group[:5]) + (f", and {len(group) - 5} more" if len(group) > 5 else "")
        problems.append(
            StoreProblem(
                "store-issued-elsewhere",
                f"{len(group)} active certificate(s) issued from {origin}; files not here: {names}",
                "nothing to do here: `grpcpki doctor --store` in that PKI directory checks their files",
                severity="info",
            )
        )
    return problems


def _untracked(pki: Pki, rows: list[Record]) -> list[StoreProblem]:
    certs_dir = pki.path / "certs"
    if not certs_dir.is_dir():
        return []
    tracked = {str(p) for r in rows if r.status == "active" for p in (r.cert_path, r.chain_path, r.key_path) if p}
    by_fingerprint = {r.fingerprint: r for r in rows}
    problems = []
    for directory in sorted(p for p in certs_dir.iterdir() if p.is_dir()):
        cert = directory / "cert.pem"
        if not cert.is_file() or str(cert) in tracked:
            continue
        known = by_fingerprint.get(pem_fingerprint(_read(cert)) or "")
        if known is not None:
            # A copy of a certificate the inventory already has: not a new credential, but a
            # deployment may read it from here, so grpcpki leaves it to you.
            problems.append(
                StoreProblem(
                    "store-untracked-certificate",
                    f"{cert} is a copy of {known.name}'s certificate (serial {known.serial}, {known.status}) "
                    "outside the inventory",
                    f"point whatever reads {directory} at the certificate's own files, then remove {directory}",
                    str(cert), severity="warning",
                )
            )
        else:
            problems.append(
                StoreProblem(
                    "store-untracked-certificate",
                    f"{cert} is a certificate the inventory does not list: `list` hides it and `revoke` cannot find it",
                    "`grpcpki doctor --store --repair` records it in the inventory (as the active certificate of "
                    f"{directory.name!r} if it has none), so it can be listed and revoked",
                    str(cert), repairable=True,
                )
            )
    return problems


def _archives(pki: Pki, rows: list[Record]) -> list[StoreProblem]:
    archive = pki.path / "archive"
    if not archive.is_dir():
        return []
    by_serial = {r.serial: r for r in rows}
    by_fingerprint = {r.fingerprint: r for r in rows}
    problems = []
    for cert in sorted(archive.glob("*/*/cert.pem")):
        if cert.parent.parent.name == "ca":
            continue
        row = by_serial.get(cert.parent.name)
        fingerprint = pem_fingerprint(_read(cert))
        if row is None or fingerprint == row.fingerprint:
            continue
        other = by_fingerprint.get(fingerprint or "")
        duplicate = other is not None and other.cert_path is not None and other.cert_path != cert and other.cert_path.is_file()
        problems.append(
            StoreProblem(
                "store-archive-mismatch",
                f"{cert.parent} is named for serial {cert.parent.name} but holds "
                + (f"serial {other.serial} ({other.name}, kept at {other.cert_path})" if duplicate and other else "another certificate"),
                "`grpcpki doctor --store --repair` removes this duplicate copy" if duplicate
                else "move the folder out of the PKI and inspect it: grpcpki cannot tell what it holds",
                str(cert.parent), repairable=duplicate,
            )
        )
    return problems


def _crl(pki: Pki, rows: list[Record]) -> list[StoreProblem]:
    from grpcpki.engine.revocation import crl_generations, revoked_serials

    try:
        live = set(crl_generations(pki))
        listed = revoked_serials(pki.path / CRL) if (pki.path / CRL).is_file() else frozenset()
    except GrpcpkiError as exc:
        return [StoreProblem("store-crl-missing", f"crl.pem cannot be read: {exc.message}",
                             "`grpcpki doctor --store --repair` re-signs it", str(pki.path / CRL), repairable=True)]
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    missing = [
        r for r in rows
        if r.is_leaf and r.status == "revoked" and r.not_after > now and (r.ca_generation or 1) in live
        and int(r.serial, 16) not in listed
    ]
    if not missing:
        return []
    names = ", ".join(f"{r.name} ({r.serial[:12]})" for r in missing[:5])
    return [
        StoreProblem(
            "store-crl-missing", f"{len(missing)} revoked certificate(s) not in crl.pem: {names}",
            "`grpcpki doctor --store --repair` re-signs crl.pem (needs the CA key)", str(pki.path / CRL),
            repairable=True,
        )
    ]


def _issuing_ca(pki: Pki) -> list[StoreProblem]:
    restore = "restore ca/ from your backup (the certificates it issued cannot be re-signed without it)"
    try:
        pki.load_ca()
    except PassphraseError:
        return []  # encrypted and no passphrase: doctor's CA check says so
    except GrpcpkiError as exc:
        return [StoreProblem("store-ca-broken", f"the issuing CA of generation {pki.generation}: {exc.message}",
                             restore, str(pki.ca_dir()))]
    bundle = pki.path / TRUST_BUNDLE
    root = pki.ca_dir() / "root.crt"
    try:
        anchors = {c.fingerprint_sha256 for c in pki.trust_anchors()}
        if cert_info(_read(root)).fingerprint_sha256 not in anchors:
            return [StoreProblem("store-ca-broken", f"{bundle} does not hold the current root CA",
                                 "rerun the last `grpcpki ca rotate` step, or restore ca.crt from backup", str(bundle))]
    except GrpcpkiError as exc:
        return [StoreProblem("store-ca-broken", f"{bundle}: {exc.message}", restore, str(bundle))]
    return []


def _rotation(pki: Pki) -> list[StoreProblem]:
    text = pki.inventory.get_meta("rotation")
    if not text:
        return []
    with contextlib.suppress(ValueError, TypeError):
        phase = json.loads(text).get("phase")
        if phase in ("preparing", "finishing"):
            step = "begin" if phase == "preparing" else "finish"
            return [StoreProblem("store-rotation-interrupted", f"a `ca rotate {step}` by an older grpcpki stopped half-way",
                                 f"rerun `grpcpki ca rotate {step}` to complete it")]
    return []


# -- repairs ---------------------------------------------------------------------------------------------
def repair_store(pki: Pki) -> list[str]:
    """Repair what is safe to repair, under the PKI lock; one line per action taken."""
    done: list[str] = []
    with pki.locked():  # taking the lock applies the recovery rule to pending journals
        for problem in check_store(pki, thorough=True):
            if not problem.repairable or problem.path is None:
                continue
            path = Path(problem.path)
            if problem.id == "store-temp-file":
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                done.append(f"deleted {path}")
            elif problem.id == "store-staging-left":
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"deleted {path}")
            elif problem.id == "store-untracked-certificate":
                done.append(_adopt(pki, path))
            elif problem.id == "store-archive-mismatch":
                with pki.transaction() as tx:
                    for name in LEAF_FILES:
                        if (path / name).is_file():
                            tx.remove(path / name)
                    row = pki.inventory.by_serial(path.name)
                    # Only a row of this directory points at this folder; another's names its own files.
                    if row is not None and not made_elsewhere(pki, [row]):
                        pki.inventory.set_status(row.id, row.status, paths=(None, None, None))
                done.append(f"removed the duplicate copy in {path}")
            elif problem.id == "store-crl-missing":
                from grpcpki.engine.revocation import write_crl

                summary = write_crl(pki)
                done.append(f"re-signed {summary.path} (number {summary.number})")
    return done


def _adopt(pki: Pki, cert_path: Path) -> str:
    """Record an untracked certificate: active if its name has none and its files are whole,
    else superseded with its files moved to archive/NAME/SERIAL/."""
    directory = cert_path.parent
    name = directory.name
    data = _read(cert_path)
    info = cert_info(data)
    role = "server" if "serverAuth" in info.extended_key_usage else "client"
    generation = _issuing_generation(pki, data)
    chain, key = directory / "chain.pem", directory / "key.pem"
    whole = chain.is_file() and key.is_file() and pem_fingerprint(_read(chain)) == info.fingerprint_sha256
    if whole:
        try:
            check_key_pair(_read(chain), _read(key))
        except GrpcpkiError:
            whole = False
    with pki.transaction() as tx:
        if pki.inventory.by_serial(info.serial_hex) is not None:
            return f"{cert_path}: serial {info.serial_hex} is already recorded"
        active = pki.inventory.active_leaf(name, role) is None and whole
        paths: list[Path | None] = [cert_path, chain if chain.is_file() else None, key if key.is_file() else None]
        if not active:
            target = pki.path / "archive" / name / info.serial_hex
            moved: list[Path | None] = []
            for current in paths:
                if current is None:
                    moved.append(None)
                    continue
                tx.link(current, target / current.name)
                tx.remove(current)
                moved.append(target / current.name)
            paths = moved
        pki.inventory.add(
            NewRecord(
                serial=info.serial_hex, kind=role, name=name, subject=info.subject,
                sans=[str(s) for s in info.sans], issuer=info.issuer, not_before=info.not_before,
                not_after=info.not_after, fingerprint=info.fingerprint_sha256, key_type=info.key_type,
                eku=info.extended_key_usage, ca_generation=generation, cert_path=paths[0], chain_path=paths[1],
                key_path=paths[2], status="active" if active else "superseded",
            )
        )
    where = "as the active certificate" if active else f"as superseded, files moved to archive/{name}/{info.serial_hex}/"
    return f"recorded {cert_path} (serial {info.serial_hex}) {where}; `grpcpki revoke {info.serial_hex}` can now revoke it"


def _issuing_generation(pki: Pki, cert_pem: bytes) -> int | None:
    cert = load_certificates(cert_pem)[0]
    for directory in sorted((pki.path / "ca").glob("g*")):
        for name in ("intermediate.crt", "root.crt"):
            issuer_file = directory / name
            if not issuer_file.is_file():
                continue
            with contextlib.suppress(Exception):
                cert.verify_directly_issued_by(load_certificates(_read(issuer_file))[0])
                return int(directory.name.removeprefix("g"))
    return None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


__all__ = ["STORE_PROBLEMS", "StoreProblem", "check_store", "made_elsewhere", "repair_store"]
