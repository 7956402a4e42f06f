"""The engine's store on both backends (the `backend` fixture of conftest.py):
the Pki batch, refusal and renewal tests of tests/store and tests/engine, with the inventory in
the PKI's SQLite file or in a PostgreSQL database (GRPCPKI_DB), so the advisory lock, the
savepoints of a batch and the commit marker are exercised in-process on both."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from grpcpki.engine import AlreadyExistsError, InvalidNameError, KeyType, Pki, Role
from grpcpki.engine.keys import generate_key
from grpcpki.engine.pki import LeafRequest
from grpcpki.engine.rotation import needs_new_csr, renew


@pytest.fixture
def pki(tmp_path: Path, backend: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pki]:
    if backend:
        monkeypatch.setenv("GRPCPKI_DB", backend)
    else:
        monkeypatch.delenv("GRPCPKI_DB", raising=False)
    made = Pki.init(tmp_path / "pki")
    try:
        yield made
    finally:
        made.inventory.close()


def _files(pki: Pki) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in pki.path.rglob("*") if p.is_file() and p.suffix in (".pem", ".crt", ".key")}


def test_issue_many_lands_every_leaf_in_one_transaction(pki: Pki) -> None:
    requests = [LeafRequest(Role.SERVER if i % 2 else Role.CLIENT, f"svc-{i}") for i in range(20)]
    records = pki.issue_many(requests)
    assert [r.name for r in records] == [r.name for r in requests]
    assert len(pki.records()) == 20
    assert pki.records(expiring_within=timedelta(days=365)) and not pki.records(expiring_within=timedelta(days=1))
    # One commit: the inventory holds the marker of exactly one store transaction of this directory.
    markers = [k for k in _meta_keys(pki) if k.startswith("txn:")]
    assert len(markers) == 1, markers


def _meta_keys(pki: Pki) -> list[str]:
    import sqlalchemy as sa

    from grpcpki.engine.schema import meta

    return [str(k) for k in pki.inventory._conn.execute(sa.select(meta.c.key)).scalars()]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (LeafRequest(Role.SERVER, "taken"), AlreadyExistsError),  # already active
        (LeafRequest(Role.SERVER, "svc-1"), AlreadyExistsError),  # twice in the batch
        (LeafRequest(Role.SERVER, "bad name/.."), InvalidNameError),
    ],
    ids=["existing-name", "duplicate-in-batch", "invalid-name"],
)
def test_a_bad_request_writes_nothing_of_the_batch(pki: Pki, bad: LeafRequest, error: type[Exception]) -> None:
    pki.issue(Role.SERVER, "taken")
    before = _files(pki)
    requests = [LeafRequest(Role.SERVER, f"svc-{i}") for i in range(5)]
    with pytest.raises(error):
        pki.issue_many([*requests[:3], bad, *requests[3:]])
    assert _files(pki) == before
    assert [r.name for r in pki.records()] == ["taken"]


def test_a_second_active_leaf_is_refused_and_nothing_is_written(pki: Pki) -> None:
    first = pki.issue(Role.SERVER, "localhost")
    before = _files(pki)
    leaf = pki.signing_ca().issue(Role.SERVER, "localhost")
    with pytest.raises(AlreadyExistsError):
        pki.store_leaf(leaf)
    assert _files(pki) == before
    assert not list(pki.path.rglob(".*.tmp"))
    assert [r.serial for r in pki.records()] == [first.serial]


def test_renew_all_supersedes_and_archives(pki: Pki) -> None:
    old = pki.issue_many([LeafRequest(Role.SERVER, f"svc-{i}") for i in range(5)])
    results = renew(pki, force=True)
    assert {r.action for r in results} == {"renewed"}
    for record in old:
        assert (pki.path / "archive" / record.name / record.serial / "cert.pem").is_file()
        again = pki.inventory.by_serial(record.serial)
        assert again is not None and again.status == "superseded"
    assert len(pki.records()) == 5


def test_records_read_back_equal_the_records_written(pki: Pki) -> None:
    """Inventory._row fills a Record in without its __init__ and builds its paths on first use
    (issue 10): field for field, it is the Record the write returned, on both backends."""
    written = pki.issue_many([
        LeafRequest(Role.SERVER, "svc-a", sans=["10.0.0.1"]),
        LeafRequest(Role.CLIENT, "svc-b", sans=["spiffe://example.org/b"]),
    ])
    with pki.transaction():  # a leaf signed from a CSR: no key.pem, so no key_path
        written.append(pki.store_leaf(pki.signing_ca().issue(
            Role.CLIENT, "from-csr", public_key=generate_key(KeyType.ECDSA_P256).public_key())))
    read = {record.name: record for record in pki.records()}
    # The text of each path before its Path is built (what a batch reads), then after: the same.
    texts = {(name, field): record.path_text(field) for name, record in read.items()
             for field in ("cert_path", "chain_path", "key_path")}
    assert [read[r.name].has_cert for r in written] == [True, True, True]
    # A copy made before any path was asked for (what a forked signing worker inherits).
    copies = {name: pickle.loads(pickle.dumps(record)) for name, record in read.items()}
    assert read.keys() == {"svc-a", "svc-b", "from-csr"}
    for record in written:
        assert copies[record.name] == record and copies[record.name].chain_path == record.chain_path
        again = read[record.name]
        # has_key first, before anything builds the key's Path.
        assert again.has_key is (record.name != "from-csr") is (again.key_path is not None)
        assert needs_new_csr(again) is (record.name == "from-csr")
        assert again == record and hash(again) == hash(record) and repr(again) == repr(record)
        assert again.to_dict() == record.to_dict()
        assert isinstance(again.cert_path, Path) and again.cert_path.is_file()
        assert dataclasses.replace(again) == record
        for field in ("cert_path", "chain_path", "key_path"):
            path = getattr(record, field)
            assert texts[(record.name, field)] == again.path_text(field) == (None if path is None else str(path))
    with pytest.raises(AttributeError):
        read["svc-a"].no_such_field  # type: ignore[attr-defined]  # noqa: B018
