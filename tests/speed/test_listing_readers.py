"""The two readers of `grpcpki list` (issue 10): the embedded SQLite file through the standard
library (grpcpki.engine.listing.SqliteListing, no SQLAlchemy) and Inventory.iter_listing
(SQLAlchemy: PostgreSQL, or a file to migrate or recover first) give the same rows, and the
fast one is used only when it reads exactly what Inventory would."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from grpcpki.engine import Pki, Role
from grpcpki.engine import listing, schema
from grpcpki.engine.inventory import SCHEMA_VERSION, Inventory
from grpcpki.engine.listing import SqliteListing, open_listing
from grpcpki.engine.revocation import revoke
from grpcpki.engine.rotation import renew_leaf

NOW = datetime.now(UTC)

FILTERS = [
    pytest.param({}, id="active"),
    pytest.param({"statuses": None}, id="all-statuses"),
    pytest.param({"kinds": ("server",)}, id="servers"),
    pytest.param({"kinds": ("server", "client"), "statuses": None}, id="leaves-all-statuses"),
    pytest.param({"expiring_before": NOW + timedelta(days=30)}, id="expiring-30d"),
    pytest.param({"expiring_before": NOW}, id="expired"),
    pytest.param({"statuses": ("revoked", "superseded")}, id="inactive"),
    pytest.param({"limit": 2}, id="limit"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every status and kind, an expired leaf, SANs of each type, revocation times."""
    path = tmp_path_factory.mktemp("readers") / "pki"
    made = Pki.init(path, name="Readers CA", intermediate=True, now=NOW - timedelta(days=100))
    made.issue(Role.SERVER, "old", days=30, now=NOW - timedelta(days=40))
    made.issue(Role.CLIENT, "soon", days=30, now=NOW - timedelta(days=20), sans=["spiffe://example.org/soon"])
    made.issue(Role.SERVER, "fresh", days=90, sans=["10.0.0.7", "fresh.internal"])
    made.issue(Role.CLIENT, "gone", sans=["spiffe://example.org/gone"])
    made.issue(Role.SERVER, "renewed")
    made.issue(Role.CLIENT, "fresh")  # a server and a client of one name
    revoke(made, "gone", reason="keyCompromise")
    renew_leaf(made, made.find("renewed"))
    made.inventory.close()
    return path


@pytest.fixture(scope="module")
def readers(pki: Path) -> Iterator[tuple[SqliteListing, Inventory]]:
    fast = SqliteListing.open(pki)
    assert fast is not None, "an up-to-date embedded inventory must take the sqlite3 reader"
    full = Inventory(pki / "inventory.db", pki)
    yield fast, full
    fast.close()
    full.close()


@pytest.mark.parametrize("filters", FILTERS)
def test_both_readers_give_the_same_rows_and_counts(readers: tuple[SqliteListing, Inventory], filters: dict) -> None:  # type: ignore[type-arg]
    fast, full = readers
    rows = list(fast.iter_listing(**filters))
    assert rows == list(full.iter_listing(**filters))
    counted = {k: v for k, v in filters.items() if k != "limit"}
    assert fast.count(**counted) == full.count(**counted)
    if filters == {"statuses": None}:
        assert {r.status for r in rows} == {"active", "superseded", "revoked"}
        assert any(r.revoked_at is not None and r.revocation_reason for r in rows)
        assert [r.not_after for r in rows] == sorted(r.not_after for r in rows)


def test_the_listing_reads_the_expiry_index_without_a_sort(readers: tuple[SqliteListing, Inventory]) -> None:
    """SQLite walks (status, not_after) in order; only rows tied on not_after are sorted by name as
    they stream ("RIGHT PART OF ORDER BY"), never the whole result (constant memory at 100,000)."""
    fast, _ = readers
    sent: list[str] = []
    fast._conn.set_trace_callback(sent.append)  # the statement as SQLite ran it, values expanded
    try:
        list(fast.iter_listing(expiring_before=NOW + timedelta(days=30)))
        list(fast.iter_listing())
    finally:
        fast._conn.set_trace_callback(None)
    for statement in sent:
        plan = " ".join(str(row[-1]) for row in fast._conn.execute(f"EXPLAIN QUERY PLAN {statement}"))
        assert "USING INDEX certificates_status_not_after" in plan, plan
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
    assert len(sent) == 2


def test_schema_constants_match_the_sqlalchemy_side() -> None:
    assert listing.head_revision() == schema.HEAD_REVISION
    assert listing.SCHEMA_VERSION == SCHEMA_VERSION


def test_anything_but_an_up_to_date_embedded_inventory_goes_to_the_full_reader(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "pki"
    shutil.copytree(pki, copy)
    monkeypatch.setenv("GRPCPKI_DB", "postgresql://nobody@127.0.0.1:1/none")
    assert SqliteListing.open(copy) is None  # a shared inventory: --db / GRPCPKI_DB
    monkeypatch.delenv("GRPCPKI_DB")
    (copy / ".journal" / "pending").mkdir(parents=True)
    assert SqliteListing.open(copy) is None  # a writer died mid-change: recovery first
    (copy / ".journal" / "pending").rmdir()
    with closing(sqlite3.connect(copy / "inventory.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = '0002'")
    assert SqliteListing.open(copy) is None  # a schema to migrate
    # ... which open_listing hands to Inventory, which migrates it and lists the same rows.
    source = open_listing(copy)
    assert isinstance(source, Inventory)
    migrated = list(source.iter_listing(statuses=None))
    source.close()
    fast = SqliteListing.open(copy)
    assert fast is not None and list(fast.iter_listing(statuses=None)) == migrated
    fast.close()
    (copy / "ca.crt").unlink()
    assert SqliteListing.open(copy) is None  # no CA: Inventory's one-line NoCAError


def test_a_listing_never_writes_the_inventory(pki: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pki"
    shutil.copytree(pki, copy)
    (copy / "inventory.db").chmod(0o444)
    fast = SqliteListing.open(copy)
    assert fast is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        fast._conn.execute("DELETE FROM certificates")
    assert len(list(fast.iter_listing(statuses=None))) == 9
    fast.close()
