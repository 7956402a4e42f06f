"""Helpers for the store tests: the consistency rules every crash and race must leave intact.

``assert_store_consistent`` reads the files and the inventory directly (sqlite3 and
cryptography), not through grpcpki's own consistency checker, so a bug there cannot hide one
in the write path.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from grpcpki.engine.profiles import Role
from grpcpki.engine.verify import verify_chain

LEAF_FILES = ("cert.pem", "chain.pem", "key.pem")


def _certs(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def _fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _public(key_or_cert: object) -> bytes:
    public = key_or_cert.public_key()  # type: ignore[attr-defined]
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def assert_store_consistent(pki_dir: Path, *, passphrase: bytes | None = None) -> dict[str, int]:
    """Every rule of docs/security.md, checked with the real keys; returns counts for reporting."""
    problems: list[str] = []
    assert (pki_dir / "inventory.db").is_file() and (pki_dir / "ca.crt").is_file(), f"no PKI left in {pki_dir}"
    # Nothing in flight, nothing left over.
    leftovers = [str(p.relative_to(pki_dir)) for p in pki_dir.rglob("*") if p.name.endswith((".tmp", ".bak"))]
    problems += [f"stray temp file {p}" for p in leftovers]
    journal = pki_dir / ".journal"
    if journal.is_dir() and any(journal.iterdir()):
        problems.append(f"journal not empty: {sorted(p.name for p in journal.iterdir())}")
    problems += [f"staging directory left: {p.name}" for p in pki_dir.parent.glob(f".{pki_dir.name}.new-*")]

    with closing(sqlite3.connect(f"file:{pki_dir / 'inventory.db'}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM certificates")]
        meta = {r["key"]: r["value"] for r in db.execute("SELECT key, value FROM meta")}
    generation = int(meta.get("ca_generation", "1"))
    rotation = json.loads(meta["rotation"]) if meta.get("rotation") else {"phase": "idle"}
    assert rotation["phase"] in ("idle", "overlap"), f"rotation left in phase {rotation['phase']}"

    # The CA that signs: certificate and key present and matching.
    ca_dir = pki_dir / "ca" / f"g{generation}"
    issuing = "intermediate" if (ca_dir / "intermediate.crt").is_file() else "root"
    ca_cert = _certs((ca_dir / f"{issuing}.crt").read_bytes())[0]
    ca_key = load_pem_private_key((ca_dir / f"{issuing}.key").read_bytes(), passphrase)
    assert _public(ca_key) == _public(ca_cert), f"{issuing}.key of generation {generation} does not match"
    bundle = (pki_dir / "ca.crt").read_bytes()
    root = _certs((ca_dir / "root.crt").read_bytes())[0]
    assert _fingerprint(root) in {_fingerprint(c) for c in _certs(bundle)}, "ca.crt does not trust the current root"

    by_path: dict[str, dict[str, object]] = {}
    active_names: set[tuple[str, str]] = set()  # names are unique per kind (a server and a client may share one)
    for row in rows:
        for column in ("cert_path", "chain_path", "key_path"):
            if row[column]:
                by_path[row[column]] = row
        if row["kind"] in ("server", "client") and row["status"] == "active":
            name = row["name"]
            if (name, row["kind"]) in active_names:
                problems.append(f"two active {row['kind']} certificates named {name}")
            active_names.add((name, row["kind"]))
            # A leaf signed from a CSR has no key in the PKI (key_path NULL): two files, not three.
            files = {c: pki_dir / str(row[c]) for c in ("cert_path", "chain_path", "key_path") if row[c] is not None}
            if "cert_path" not in files or "chain_path" not in files:
                problems.append(f"active {name}: no cert_path/chain_path in its row")
                continue
            missing = [str(p) for p in files.values() if not p.is_file()]
            if missing:
                problems.append(f"active {name}: missing {missing}")
                continue
            chain = files["chain_path"].read_bytes()
            leaf = _certs(files["cert_path"].read_bytes())[0]
            if _fingerprint(leaf) != row["fingerprint"] or _fingerprint(_certs(chain)[0]) != row["fingerprint"]:
                problems.append(f"active {name}: files hold another certificate than row serial {row['serial']}")
                continue
            if "key_path" in files:
                key = load_pem_private_key(files["key_path"].read_bytes(), None)
                if _public(key) != _public(leaf):
                    problems.append(f"active {name}: key.pem does not match cert.pem")
            check = verify_chain(chain, bundle, Role(row["kind"]))
            if not check.ok:
                # `ca rotate finish --force` strands leaves of the old CA on purpose: their files
                # must still be whole, so they verify against the root that issued them.
                own_root = pki_dir / "ca" / f"g{row['ca_generation'] or 1}" / "root.crt"
                stranded = (row["ca_generation"] or 1) != generation and own_root.is_file()
                if not (stranded and verify_chain(chain, own_root.read_bytes(), Role(row["kind"])).ok):
                    problems.append(f"active {name}: chain does not verify: {check.detail}")

    # No certificate (or key) on disk without its row; archives hold the certificate they are named for.
    for path in sorted((pki_dir / "certs").glob("*/*")) if (pki_dir / "certs").is_dir() else []:
        relative = str(path.relative_to(pki_dir))
        row = by_path.get(relative)
        if row is None or row["status"] != "active":
            problems.append(f"{relative} has no active inventory row")
    for path in sorted((pki_dir / "archive").glob("*/*/cert.pem")) if (pki_dir / "archive").is_dir() else []:
        serial = path.parent.name
        if path.parent.parent.name == "ca":
            continue
        row = next((r for r in rows if r["serial"] == serial), None)
        if row is None:
            problems.append(f"{path.relative_to(pki_dir)}: no row for serial {serial}")
        elif _fingerprint(_certs(path.read_bytes())[0]) != row["fingerprint"]:
            problems.append(f"{path.relative_to(pki_dir)} holds another certificate than serial {serial}")
        elif row["status"] == "active":
            problems.append(f"{path.relative_to(pki_dir)}: archived but its row is still active")

    # Every revoked serial whose CA is still trusted is in crl.pem (after `ca rotate finish` the
    # old CA's certificates fail anyway: its root left ca.crt).
    trusted = {_fingerprint(c) for c in _certs(bundle)}

    def still_trusted(generation: int | None) -> bool:
        root_file = pki_dir / "ca" / f"g{generation or 1}" / "root.crt"
        return root_file.is_file() and _fingerprint(_certs(root_file.read_bytes())[0]) in trusted

    revoked = {r["serial"] for r in rows if r["status"] == "revoked" and still_trusted(r["ca_generation"])}
    if revoked:
        crl_file = pki_dir / "crl.pem"
        listed: set[str] = set()
        if crl_file.is_file():
            text = crl_file.read_bytes()
            for block in text.split(b"-----END X509 CRL-----")[:-1]:
                crl = x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n")
                listed |= {format(entry.serial_number, "x") for entry in crl}
        problems += [f"revoked serial {s} is not in crl.pem" for s in sorted(revoked - listed)]
    assert not problems, "store inconsistent:\n  " + "\n  ".join(problems)
    return {"rows": len(rows), "active": len(active_names), "revoked": len(revoked)}


HOLD_LOCK = """
import sys, time
from grpcpki.engine.pki import LockOptions, Pki
pki = Pki.open(sys.argv[1], lock=LockOptions(command="grpcpki renew"))
with pki.locked():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(pki_dir: Path, seconds: float) -> subprocess.Popen[str]:
    """A process that holds the PKI lock for ``seconds`` (as `grpcpki renew` would)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(pki_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def wait_gone(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(0)
