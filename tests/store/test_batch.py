"""The batch API: many leaves in one locked transaction, all of them or none."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_support import assert_store_consistent

from support import Result, assert_clean_error, run_grpcpki, tree

from grpcpki.engine import AlreadyExistsError, InvalidNameError, Pki, Role
from grpcpki.engine.pki import LeafRequest
from grpcpki.engine.rotation import renew


def _files(pki: Pki) -> dict[str, bytes]:
    return {
        str(p.relative_to(pki.path)): p.read_bytes()
        for p in pki.path.rglob("*")
        if p.is_file() and not p.name.startswith(("inventory.db", ".lock"))
    }


def test_issue_many_lands_every_leaf_in_one_transaction(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki", intermediate=True)
    requests = [LeafRequest(Role.SERVER if i % 2 else Role.CLIENT, f"svc-{i}") for i in range(40)]
    seen: list[str] = []
    records = pki.issue_many(requests, on_result=lambda request, _record: seen.append(request.name))
    assert [r.name for r in records] == [r.name for r in requests] == seen
    assert len(pki.records()) == 40
    # One commit: the inventory holds the marker of exactly one store transaction.
    markers = pki.inventory.execute("SELECT key FROM meta WHERE key LIKE 'txn:%'").fetchall()
    assert len(markers) == 1
    counts = assert_store_consistent(pki.path)
    assert counts["active"] == 40


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (LeafRequest(Role.SERVER, "taken"), AlreadyExistsError),  # already active
        (LeafRequest(Role.SERVER, "svc-1"), AlreadyExistsError),  # twice in the batch
        (LeafRequest(Role.SERVER, "bad name/.."), InvalidNameError),
    ],
    ids=["existing-name", "duplicate-in-batch", "invalid-name"],
)
def test_a_bad_request_writes_nothing_of_the_batch(tmp_path: Path, bad: LeafRequest, error: type[Exception]) -> None:
    pki = Pki.init(tmp_path / "pki")
    pki.issue(Role.SERVER, "taken")
    before = _files(pki)
    requests = [LeafRequest(Role.SERVER, f"svc-{i}") for i in range(5)]
    with pytest.raises(error):
        pki.issue_many([*requests[:3], bad, *requests[3:]])
    assert _files(pki) == before
    assert [r.name for r in pki.records()] == ["taken"]
    assert_store_consistent(pki.path)


def test_renew_all_is_one_transaction_and_archives_each_old_certificate(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    old = pki.issue_many([LeafRequest(Role.SERVER, f"svc-{i}") for i in range(20)])
    results = renew(pki, force=True)
    assert {r.action for r in results} == {"renewed"}
    for record in old:
        archived = pki.path / "archive" / record.name / record.serial / "cert.pem"
        assert archived.is_file() and pki.inventory.by_serial(record.serial).status == "superseded"  # type: ignore[union-attr]
        # A hard link to the old file: the archived key kept its 0600 from the first instant.
        assert (archived.parent / "key.pem").stat().st_mode & 0o777 == 0o600
    assert assert_store_consistent(pki.path)["active"] == 20


def test_leftovers_of_older_grpcpki_writes_are_swept_where_a_change_lands(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    pki.issue(Role.SERVER, "api")
    leftovers = [pki.leaf_dir("api") / ".key.pem.k2j4h1.tmp", pki.leaf_dir("api") / ".cert.pem.bak"]
    for path in leftovers:
        path.write_bytes(b"left by a killed grpcpki 0.1")
    renew(pki, ["api"], force=True)
    assert not any(p.exists() for p in leftovers)
    assert_store_consistent(pki.path)


def test_a_failed_item_undoes_exactly_its_own_file_changes(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    shared = pki.path / "shared.txt"
    with pki.transaction() as tx:
        tx.write(shared, b"first", 0o644)
        tx.write(pki.path / "one.txt", b"1", 0o644)
        with pytest.raises(RuntimeError), tx.item():
            tx.write(shared, b"overwritten by the failed item", 0o644)
            tx.write(pki.path / "two.txt", b"2", 0o644)
            raise RuntimeError("this item fails")
        with tx.item():
            tx.write(pki.path / "three.txt", b"3", 0o644)
    assert shared.read_bytes() == b"first"
    assert (pki.path / "one.txt").is_file() and (pki.path / "three.txt").is_file()
    assert not (pki.path / "two.txt").exists()
    assert not list(pki.path.glob(".*.tmp"))


def test_one_batch_mixes_reissues_new_names_and_both_kinds_of_a_name(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    old = pki.issue(Role.SERVER, "api")
    stale = pki.issue(Role.SERVER, "gone")
    renew(pki, ["gone"], force=True)  # `stale` is superseded now: a batch must refuse to replace it
    ca = pki.signing_ca()
    leaves = [ca.issue(Role.SERVER, "api"), ca.issue(Role.SERVER, "orders"), ca.issue(Role.SERVER, "gone"),
              ca.issue(Role.CLIENT, "orders")]
    refused: list[int] = []
    with pki.transaction():
        records = pki.store_leaves(leaves, [old, None, stale, None], on_refused=lambda i, _e: refused.append(i))
    assert refused == [2] and records[2] is None
    api, server, _, client = records
    assert api is not None and server is not None and client is not None
    assert api.cert_path == old.cert_path  # a reissue stays where servers were told to look
    assert client.cert_path is not None and client.cert_path.parent.name == "orders+client"
    row = pki.inventory.by_serial(old.serial)
    assert row is not None and row.status == "superseded" and row.superseded_by == api.id
    assert row.cert_path == pki.path / "archive" / "api" / old.serial / "cert.pem"
    assert pki.inventory.by_id(api.id) == api  # the Record built in memory is the row as stored
    assert assert_store_consistent(pki.path)["active"] == 4


def test_renew_with_an_encrypted_ca_asks_only_when_something_is_due(tmp_path: Path) -> None:
    def grpcpki(*args: str, passphrase: str | None = None) -> Result:
        env = {"GRPCPKI_PASSPHRASE": passphrase} if passphrase is not None else {}
        return run_grpcpki("--pki", str(tmp_path / "pki"), *args, cwd=tmp_path, env=env)

    # Made in-process: each unlock of the key costs a 600,000-round KDF, a subprocess more on top.
    pki = Pki.init(tmp_path / "pki", passphrase=b"s3cret")
    pki.issue_many([LeafRequest(Role.SERVER, "a"), LeafRequest(Role.SERVER, "b")])
    pki.inventory.close()
    # Nothing due: cron is never asked for a passphrase (no prompt without a terminal: an error).
    quiet = grpcpki("renew", "--all")
    assert quiet.code == 0 and "nothing to renew: 2 not due" in quiet.stderr, quiet.output
    before = tree(tmp_path / "pki")
    assert_clean_error(grpcpki("renew", "--all", "--force", passphrase="nope"), "wrong passphrase")
    assert tree(tmp_path / "pki") == before  # unlocked before anything was planned or written
    done = grpcpki("renew", "--all", "--force", passphrase="s3cret")
    assert done.code == 0 and done.stderr.count("renewed server") == 2, done.output
    assert_store_consistent(tmp_path / "pki", passphrase=b"s3cret")


def test_an_archive_folder_lands_by_one_rename_and_is_undone_or_merged_as_the_journal_says(tmp_path: Path) -> None:
    """StoreTransaction.archive: built whole under a temp name; a roll back removes only that
    (the files it links to stay), a roll forward is one rename, repeatable, and files into a
    folder that is already there rather than failing."""
    from grpcpki.engine.journal import roll_back, roll_forward, stage_archive

    root = tmp_path / "pki"
    live = root / "certs" / "api"
    live.mkdir(parents=True)
    sources = tuple(live / name for name in ("cert.pem", "key.pem"))
    for source in sources:
        source.write_bytes(source.name.encode())
    ops: list[list[str | None]] = [["archive", "archive/api/.0a1b.TXN.tmp", "archive/api/0a1b"]]

    stage_archive(str(root / "archive/api/.0a1b.TXN.tmp"), sources, None)
    roll_back(root, ops)
    assert not (root / "archive" / "api").exists()  # the temp folder, and archive/api it had to make
    assert [s.read_bytes() for s in sources] == [b"cert.pem", b"key.pem"]

    stage_archive(str(root / "archive/api/.0a1b.TXN.tmp"), sources, None)
    roll_forward(root, ops)
    roll_forward(root, ops)  # a replay after a crash mid-way: nothing left to do
    final = root / "archive/api/0a1b"
    assert sorted(p.name for p in final.iterdir()) == ["cert.pem", "key.pem"]
    assert (final / "key.pem").stat().st_ino == sources[1].stat().st_ino  # a link, no copy

    # The serial's folder already holds a file (put there by hand): ours are filed beside it.
    (final / "cert.pem").unlink()
    (final / "note.txt").write_text("kept")
    stage_archive(str(root / "archive/api/.0a1b.TXN.tmp"), sources[:1], None)
    roll_forward(root, ops)
    assert sorted(p.name for p in final.iterdir()) == ["cert.pem", "key.pem", "note.txt"]
    assert not (root / "archive/api/.0a1b.TXN.tmp").exists()


def test_a_big_transaction_is_checkpointed_beside_its_renames(tmp_path: Path) -> None:
    """A batch's COMMIT leaves SQLite's checkpoint to a thread that runs beside the renames
    (Inventory.checkpoint_beside): when the batch returns, the database file itself holds its rows
    (a copy without the WAL sees them), the thread is gone, and automatic checkpoints are back on."""
    import shutil
    import sqlite3
    import threading

    pki = Pki.init(tmp_path / "pki")
    pki.issue_many([LeafRequest(Role.SERVER, f"svc-{i}") for i in range(10)])
    renew(pki, force=True)
    assert [t.name for t in threading.enumerate() if t.name == "grpcpki-checkpoint"] == []
    assert pki.inventory.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    shutil.copy(pki.path / "inventory.db", tmp_path / "without-wal.db")  # the -wal file left behind
    with sqlite3.connect(tmp_path / "without-wal.db") as db:
        counts = dict(db.execute("SELECT status, count(*) FROM certificates WHERE kind = 'server' GROUP BY status"))
    assert counts == {"active": 10, "superseded": 10}
