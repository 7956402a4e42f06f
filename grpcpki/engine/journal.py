"""The store's write path: one lock, one transaction, one recovery rule.

**Lock.** Every command that changes a PKI holds ``PKI/.lock`` (``flock``, :mod:`.lock`), and
with a shared PostgreSQL inventory also the database's advisory lock, from
before it reads the state it will change until its last file is in place, so writers run one
after another and each decides on fresh state (a renew never resurrects what a revoke just
withdrew). Readers (list, inspect, doctor, serve, greet) never take it and never wait: the
inventory is SQLite in WAL mode, and files are only ever replaced by ``rename``.

**Transaction.** A :class:`StoreTransaction` collects file changes (writes, archive links,
removals) beside the inventory rows of one SQLite transaction. On commit:

1. the intent journal ``PKI/.journal/ID.json`` lists every change (temp name -> final name)
   and is made durable;
2. every new file is written to its temp name (``.NAME.ID.tmp`` beside its final path), and
   every archive copy is a hard link to the file it preserves (a leaf's archive folder
   ``archive/NAME/SERIAL`` is built whole under its temp name, links and all), then made
   durable (one ``fsync`` per file and directory for a small change, one ``syncfs`` for a batch);
3. **commit point**: the rows and the marker ``meta['txn:ID']`` are committed in one database
   transaction (SQLite's, or PostgreSQL's for a shared inventory: the same rule, as the marker
   is a row like the others; there it is ``txn:ORIGIN:ID``, ORIGIN naming this PKI directory on
   this machine, so one operator's commit never deletes another's pending marker);
4. the temp files are renamed over their final names in journal order (keys before
   certificates, so a hot-reloading server never pairs a new certificate with an old key),
   each archive folder by one rename (not one per file: a third of the renames of `renew --all`),
   removed files are unlinked, the renames made durable, and the journal deleted. (For a batch,
   SQLite's checkpoint of the commit runs in a thread beside these renames rather than inside
   the COMMIT: Inventory.checkpoint_beside.)

**Recovery rule.** The next process that takes the lock (or a reader that finds the lock
free) replays every journal left behind: if its marker is in the inventory the change
happened, so the remaining renames and removals are done (roll forward); if not, it never
happened, so its temp files (and temp archive folders) are deleted (roll back). Either way the
journal goes. Final files
are touched only after the commit point, so no SIGKILL leaves a file that disagrees with the
rows for longer than until the next grpcpki command. ``init-ca --force`` builds the new PKI in
a hidden sibling directory and swaps it in with one ``renameat2(RENAME_EXCHANGE)``; its
journal in the old PKI, and a marker in the new one's inventory, say on which side of the swap
a crash happened (:func:`recover_replace`).

**Staging by worker processes** (``--jobs``, :mod:`.workers`). A big batch may have its new
files signed and written to their temp names by forked workers. The journal is written first,
listing every temp name the workers (and the main process) will write (:meth:`StoreTransaction.
write_journal_now`, with :meth:`StoreTransaction.deferred_write` for a file whose bytes a worker
makes), so the recovery rule above still covers every file: a temp name that was never written
(its certificate failed, or a worker was killed) is simply missing, which both roll forward and
roll back already treat as nothing to do. The main process alone holds the lock, writes the
journal, rows and marker, syncs, commits and renames; the workers die with it (a SIGKILL of the
main process kills them too), and it waits for them all before the commit point or an abort.

``GRPCPKI_TEST_CRASH_AT=N`` (tests only) SIGKILLs the process at the Nth step of this
protocol, so tests reach every crash point deterministically (tests/store/).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from grpcpki.engine.errors import GrpcpkiError, StoreError
from grpcpki.engine.inventory import IntegrityError, Inventory
from grpcpki.engine.storage import PRIVATE_DIR_MODE, ensure_dir

JOURNAL_DIR = ".journal"
TXN_META_PREFIX = "txn:"
REPLACE_META = "replaces_txn"
TEMP_SUFFIX = ".tmp"
# Up to this many files a change is made durable file by file; above, one syncfs(2) of the
# filesystem is cheaper than thousands of fsyncs (a batch `apply` or `renew --all`).
_SMALL_CHANGE = 16
CRASH_ENV = "GRPCPKI_TEST_CRASH_AT"


# -- the test-only crash hook ----------------------------------------------------------------------
def _crash_target() -> int | None:
    text = os.environ.get(CRASH_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


_crash_at = _crash_target()
_crash_count = 0


def crash_point(label: str) -> None:
    """Tests only: SIGKILL this process at the Nth call when GRPCPKI_TEST_CRASH_AT=N."""
    global _crash_count
    if _crash_at is None:
        return
    _crash_count += 1
    if _crash_count == _crash_at:
        sys.stderr.write(f"grpcpki test crash point {_crash_count}: {label}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


# -- durability helpers ----------------------------------------------------------------------------
def fsync_dir(directory: Path | str) -> None:
    """Make renames and new names in ``directory`` durable (ext4/xfs need the entry flushed)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def sync_filesystem(path: Path) -> None:
    """Flush everything written on ``path``'s filesystem: syncfs(2) on Linux, sync(2) elsewhere."""
    syncfs = getattr(_LIBC, "syncfs", None) if _LIBC is not None else None
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None) if _LIBC is not None else None
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False  # a filesystem without RENAME_EXCHANGE: the caller falls back to two renames
    raise OSError(err, os.strerror(err), str(a))


# -- one transaction ---------------------------------------------------------------------------------
@dataclass
class _Op:
    kind: str  # "write" | "link" | "remove" | "archive" (a folder of links: StoreTransaction.archive)
    final: str  # paths as text: Path arithmetic was a third of staging a batch of 10,000
    temp: str | None = None
    data: bytes | None = field(default=None, repr=False)
    mode: int = 0o644
    source: Path | None = None
    sources: tuple[Path | str, ...] = ()  # an "archive" op's files, linked into it under their own names
    entry: list[str | None] | None = field(default=None, repr=False)
    # Written to its temp name by someone else (a worker process: deferred_write), or never:
    # listed in the journal, never staged by prepare().
    deferred: bool = False
    staged: bool = False
    new_folder: bool = False


def new_txn_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


class StoreTransaction:
    """File changes that land together with the inventory rows of the same transaction.

    Use through ``Pki.transaction()`` (which holds the lock and the SQLite transaction):
    ``tx.write(path, data, mode)``, ``tx.link(source, path)`` (keep a file's current content under
    a second name), ``tx.archive(folder, sources)`` (keep several in a new folder: a leaf's
    archive/NAME/SERIAL), ``tx.remove(path)``; ``with tx.item(): ...`` undoes one item's rows and
    files if it raises, so a batch can skip a failed item.
    """

    def __init__(self, root: Path, inventory: Inventory) -> None:
        self.root = root
        self.inventory = inventory
        self.id = new_txn_id()
        # The markers this PKI directory writes (journal.py's docstring, step 3).
        self._marker_prefix = TXN_META_PREFIX + (f"{inventory.origin}:" if inventory.shared else "")
        self.marker = self._marker_prefix + self.id
        self._ops: list[_Op] = []
        # Keyed by the path as text: hashing Path objects showed in batches of 10,000.
        self._finals: dict[str, _Op] = {}
        self._journal: Path | None = None
        self._savepoints = 0
        # (op, index): op appended (index -1), or op removed from that index; item() replays it backwards.
        self._undo: list[tuple[_Op, int]] = []
        self._prefix = str(root) + os.sep
        self._items_open = 0
        self._journal_stale = False  # ops changed since write_journal_now: prepare() journals again
        self._umask: int | None = None

    # -- collecting -------------------------------------------------------------------------------
    def write(self, path: Path | str, data: bytes, mode: int) -> None:
        self._add(_Op("write", os.fspath(path), data=data, mode=mode))

    def link(self, source: Path, path: Path | str) -> None:
        """``path`` will hold what ``source`` holds now (a hard link; a copy where links are refused)."""
        self._add(_Op("link", os.fspath(path), source=source))

    def remove(self, path: Path | str) -> None:
        self._add(_Op("remove", os.fspath(path)))

    def archive(self, folder: Path | str, sources: tuple[Path | str, ...]) -> None:
        """The new folder ``folder`` will hold what each of ``sources`` holds now, under its own
        name (hard links, as :meth:`link`). It is built whole under a temp name and put in place
        by one rename: a renewal's archive/NAME/SERIAL costs one rename after the commit point,
        not three. ``folder`` is new (a serial is archived once); were it there, the files are
        filed into it one by one."""
        self._add(_Op("archive", os.fspath(folder), sources=sources))

    def deferred_archive(self, folder: Path | str) -> str:
        """:meth:`archive` built by someone else (a worker process) at the returned temp name,
        with :func:`stage_archive`, after :meth:`write_journal_now`; or never (nothing to keep)."""
        op = _Op("archive", os.fspath(folder), deferred=True)
        self._add(op)
        assert op.temp is not None
        return op.temp

    def deferred_write(self, path: Path | str, mode: int, *, new_folder: bool = False) -> str:
        """A new file that someone else writes at the returned temp name, after
        :meth:`write_journal_now`: a worker process (engine/workers.py). A temp name never
        written is harmless (the module docstring). ``new_folder``: its folder may be missing,
        so write_journal_now makes it (a renewal's is there: no mkdir per certificate)."""
        op = _Op("write", os.fspath(path), mode=mode, deferred=True, new_folder=new_folder)
        self._add(op)
        assert op.temp is not None
        return op.temp

    def write_journal_now(self) -> None:
        """Step 1 ahead of time, for a batch whose files others will stage: write the journal
        (every op so far, deferred ones included), make the folders of deferred writes, and stage
        this process's own writes and links. prepare() later journals again only if ops were added."""
        assert self._journal is None and not self._items_open, "the journal is written once, outside item()"
        self._umask = _current_umask()
        self._journal = write_journal(self.root, self.id, {
            "kind": "files", "marker": self.marker, "ops": [self._op_json(o) for o in self._ops]})
        self._journal_stale = False
        folders: set[str] = set()
        for op in self._ops:
            if op.temp is None or (op.deferred and not op.new_folder):
                continue  # (a renewal's folder is there; an archive folder is made by its stager)
            folder = os.path.dirname(op.temp)
            if op.deferred:
                if folder not in folders:  # the folder of a new name
                    _ensure_dir_of(folder, self._umask)
                    folders.add(folder)
                continue
            self._stage(op, sync=False, umask=self._umask)
            folders.add(folder)

    def _stage(self, op: _Op, *, sync: bool, umask: int | None) -> None:
        assert op.temp is not None
        if op.kind == "write":
            assert op.data is not None
            _write_new(op.temp, op.data, op.mode, sync=sync, umask=umask)
        elif op.kind == "archive":
            stage_archive(op.temp, op.sources, umask, sync=sync)
        else:
            assert op.source is not None
            _link_or_copy(op.source, op.temp, sync=sync)
        op.staged = True

    def pending(self, path: Path) -> bytes | None:
        """The content this transaction will write to ``path``, if any (read-your-writes)."""
        op = self._finals.get(os.fspath(path))
        return op.data if op is not None and op.kind == "write" else None

    @property
    def empty(self) -> bool:
        return not self._ops

    def _add(self, op: _Op) -> None:
        if self._journal is not None:
            self._journal_stale = True
        if op.kind != "remove":
            folder, name = os.path.split(op.final)
            op.temp = f"{folder}{os.sep}.{name}.{self.id}{TEMP_SUFFIX}"
        key = op.final
        previous = self._finals.get(key)
        if previous is not None:
            # The last word on a path wins, as a replay would have it.
            index = self._ops.index(previous)
            del self._ops[index]
            self._undo.append((previous, index))
        self._ops.append(op)
        self._undo.append((op, -1))
        self._finals[key] = op

    @contextlib.contextmanager
    def item(self) -> Iterator[None]:
        """All-or-nothing for one item of a batch: rows and files are undone if the block raises."""
        self._savepoints += 1
        name = f"item{self._savepoints}"
        mark = len(self._undo)
        self.inventory.execute(f"SAVEPOINT {name}")
        self._items_open += 1
        try:
            yield
        except BaseException:
            self._items_open -= 1
            self.inventory.execute(f"ROLLBACK TO {name}")
            self.inventory.execute(f"RELEASE {name}")
            if self._journal is not None:
                self._journal_stale = True
            # Undo the item's file changes newest first, so each step finds the list as it left it.
            for op, index in reversed(self._undo[mark:]):
                if index < 0:
                    self._ops.pop()
                    self._finals.pop(op.final, None)
                else:
                    self._ops.insert(index, op)
                    self._finals[op.final] = op
            del self._undo[mark:]
            raise
        self._items_open -= 1
        self.inventory.execute(f"RELEASE {name}")

    # -- committing (called by run_transaction) ------------------------------------------------------
    def prepare(self) -> None:
        """Steps 1-2: journal, then every temp file, durable. Runs inside the SQLite transaction."""
        if not self._ops:
            return
        early = self._journal is not None
        if not early or self._journal_stale:
            # The journal lists every temp name before it is written: written now, or again with
            # what was added since write_journal_now (a superset, replacing the old one atomically).
            self._journal = write_journal(self.root, self.id, {
                "kind": "files", "marker": self.marker, "ops": [self._op_json(o) for o in self._ops]})
            self._journal_stale = False
        small = len(self._ops) <= _SMALL_CHANGE and not early
        # Folders as text: hashing and splitting Path objects showed in a batch of 10,000.
        directories: set[str] = set()
        umask = _current_umask()
        for op in self._ops:
            if op.temp is None:
                continue
            if early:
                # Staged already (write_journal_now), by a worker, or never (a failed item): only
                # the folders need syncing.
                if op.deferred or op.staged:
                    continue  # (a pooled batch is never small: one syncfs below covers every folder)
            if _crash_at is not None:
                crash_point(f"stage {os.path.basename(op.final)}")
            folder = os.path.dirname(op.temp)
            if folder not in directories and not _ensure_dir_of(folder, umask) and small:
                # Only a folder that was already there can hold leftovers (one made just now is
                # empty): a renew's new archive/NAME/SERIAL folders skip the scan. A batch skips
                # it too (a scan per folder was a tenth of `renew --all` at 10,000): such leftovers
                # only come from grpcpki before the journal, and `doctor --store --repair` removes them.
                _sweep(Path(folder))
            self._stage(op, sync=small, umask=umask)
            directories.add(folder)
            if op.kind == "archive":
                directories.add(op.temp)  # its links are entries of the temp folder itself
        crash_point("sync staged files")
        _make_durable(self.root, directories, small)
        if early and not directories:
            sync_filesystem(self.root)
        self.inventory.set_meta(self.marker, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        # Markers of this directory's earlier, completed transactions: the lock is held and every
        # journal was replayed, so nobody reads them. Other directories' markers are theirs.
        self.inventory.forget_meta(self._marker_prefix, keep=self.marker)
        crash_point("before commit")

    def apply(self) -> None:
        """Step 4 (after the commit point): put every file in place, then forget the journal."""
        if self._journal is None:
            return
        crash_point("after commit")
        roll_forward(self.root, [self._op_json(o) for o in self._ops])
        crash_point("drop journal")
        _drop_journal(self._journal)
        self._journal = None

    def abort(self) -> None:
        """The SQLite transaction rolled back (or never committed): remove what step 2 staged."""
        if self._journal is None:
            return
        roll_back(self.root, [self._op_json(o) for o in self._ops])
        _drop_journal(self._journal)
        self._journal = None

    def _op_json(self, op: _Op) -> list[str | None]:
        if op.entry is None:
            op.entry = [op.kind, self._rel(op.temp), self._rel(op.final)]
        return op.entry

    def _rel(self, path: Path | str | None) -> str | None:
        if path is None:
            return None
        text = str(path)
        # Paths are built below the root: a prefix cut is exact and far cheaper than relpath
        # (it shows in a batch of thousands).
        if text.startswith(self._prefix):
            return text[len(self._prefix):]
        return os.path.relpath(path, self.root)


@contextlib.contextmanager
def run_transaction(root: Path, inventory: Inventory) -> Iterator[StoreTransaction]:
    """One store transaction on an already locked PKI (``Pki.transaction`` is the public door)."""
    # The inventory's COMMIT below is the commit point: an outer transaction would move it.
    assert not inventory.in_transaction, "a store transaction must not run inside an inventory transaction"
    tx = StoreTransaction(root, inventory)
    committed = False
    deferred = False
    try:
        with inventory.transaction():
            yield tx
            tx.prepare()
            # A batch: its checkpoint runs beside the renames below, not inside the COMMIT.
            deferred = len(tx._ops) > _SMALL_CHANGE and inventory.defer_checkpoint()
        committed = True
    except IntegrityError as exc:
        if deferred:
            inventory.resume_checkpoints()
        tx.abort()
        raise StoreError(f"the inventory refused the change: {str(exc.orig).strip().splitlines()[0]}", "run `grpcpki doctor --store`") from None
    except BaseException:
        if deferred:
            inventory.resume_checkpoints()
        if not committed:
            tx.abort()
        raise
    try:
        with inventory.checkpoint_beside() if deferred else contextlib.nullcontext():
            tx.apply()
    except OSError as exc:
        # Committed, but a rename failed (disk error): the journal stays for the next command.
        raise StoreError(
            f"the change was recorded but its files could not all be put in place: {exc.strerror}",
            "fix the disk problem, then run any grpcpki command to finish it (`grpcpki doctor --store`)",
        ) from None


# -- the journal on disk -----------------------------------------------------------------------------
def journal_dir(root: Path) -> Path:
    return root / JOURNAL_DIR


def write_journal(root: Path, txn_id: str, body: dict[str, object]) -> Path:
    directory = journal_dir(root)
    ensure_dir(directory, PRIVATE_DIR_MODE)
    path = directory / f"{txn_id}.json"
    temp = directory / f".{txn_id}.json{TEMP_SUFFIX}"
    crash_point("write journal")
    _write_new(temp, json.dumps({"id": txn_id, **body}).encode(), 0o600, sync=True)
    os.replace(temp, path)
    fsync_dir(directory)
    return path


def pending_journals(root: Path) -> list[Path]:
    try:
        names = os.listdir(journal_dir(root))
    except OSError:
        return []
    return sorted(journal_dir(root) / n for n in names)


def _drop_journal(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fsync_dir(path.parent)


def recover(root: Path, inventory: Inventory | None) -> list[str]:
    """Apply the recovery rule to every journal left in ``root`` (caller holds the lock).

    Returns one line per journal handled, for whoever wants to say so.
    """
    try:
        return _recover(root, inventory)
    except OSError as exc:
        raise StoreError(
            f"cannot finish or undo an interrupted change in {root}: {exc.strerror} ({exc.filename})",
            "run grpcpki as the owner of the PKI directory, then `grpcpki doctor --store`",
        ) from None


def _recover(root: Path, inventory: Inventory | None) -> list[str]:
    done: list[str] = []
    for path in pending_journals(root):
        if path.name.endswith(TEMP_SUFFIX):
            # A journal that was still being written: nothing it would list was staged yet.
            path.unlink(missing_ok=True)
            continue
        try:
            body = json.loads(path.read_bytes())
            txn_id = str(body["id"])
        except (OSError, ValueError, KeyError, TypeError):
            raise StoreError(
                f"unreadable journal {path}", "move it aside and run `grpcpki doctor --store`"
            ) from None
        if body.get("kind") == "replace":
            done.append(recover_replace(root, inventory, body))
        else:
            marker = str(body.get("marker") or TXN_META_PREFIX + txn_id)  # older journals had no "marker"
            committed = inventory is not None and inventory.get_meta(marker) is not None
            if committed:
                roll_forward(root, body["ops"])
                done.append(f"completed interrupted change {txn_id}")
            else:
                roll_back(root, body["ops"])
                done.append(f"rolled back interrupted change {txn_id}")
        _drop_journal(path)
    return done


def roll_forward(root: Path, ops: list[list[str | None]]) -> None:
    small = len(ops) <= _SMALL_CHANGE
    directories: set[str] = set()  # only a small change syncs folder by folder (else one syncfs)
    prefix = os.path.join(root, "")
    replace = os.replace
    for kind, temp, final in ops:
        assert final is not None
        final_path = prefix + final  # journal paths are relative to the root (the plain loop: 60,000 at 10,000)
        if _crash_at is not None:
            crash_point(f"{kind} {os.path.basename(final_path)}")
        if kind == "remove":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(final_path)
            _rmdir_if_empty(root, Path(final_path).parent)
        elif kind == "archive":
            assert temp is not None
            _put_folder(prefix + temp, final_path)
        else:
            assert temp is not None
            try:
                replace(prefix + temp, final_path)
            except FileNotFoundError:
                pass  # renamed by an earlier attempt, or never staged (a refused item of a pooled batch)
        if small or kind == "remove":
            directories.add(os.path.dirname(final_path))
    if small:
        _make_durable(root, directories, True)
    elif ops:
        sync_filesystem(root)


def roll_back(root: Path, ops: list[list[str | None]]) -> None:
    parents: set[Path] = set()
    for kind, temp, final in ops:
        if kind == "archive" and temp is not None:
            # Links and copies of files still in use: removing these names loses nothing.
            shutil.rmtree(root / temp, ignore_errors=True)
        elif temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(root / temp)
        if final is not None:
            parents.add((root / final).parent)
    for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        _rmdir_if_empty(root, directory)


# -- init-ca --force: build beside, then swap ----------------------------------------------------------
def recover_replace(root: Path, inventory: Inventory | None, body: dict[str, object]) -> str:
    """Finish or undo an interrupted ``init-ca --force`` (journal kind ``replace``).

    The journal is written in the old PKI before the new one is built, and copied into the new
    one; the new inventory holds ``meta['replaces_txn'] = ID``. So the PKI holding the journal
    knows which one it is: the new one (the swap happened) moves the old one from the staging
    name to its backup name; the old one (no swap) deletes the half-built staging directory.
    """
    staging = root.parent / str(body["staging"])
    backup = root.parent / str(body["backup"])
    is_new = inventory is not None and inventory.get_meta(REPLACE_META) == body["id"]
    if is_new:
        if staging.exists() and not backup.exists():
            os.replace(staging, backup)
        # The backup is a whole PKI someone may restore: it must not carry our journal.
        with contextlib.suppress(FileNotFoundError):
            (journal_dir(backup) / f"{body['id']}.json").unlink()
        return f"completed interrupted init-ca --force (the old PKI is in {backup})"
    shutil.rmtree(staging, ignore_errors=True)
    return "rolled back interrupted init-ca --force (the existing CA is unchanged)"


def finish_two_rename_swap(path: Path) -> None:
    """Where RENAME_EXCHANGE is missing, init-ca --force renames old -> backup, then new -> PKI:
    a crash between the two leaves no PKI under its name, but a complete new one under its
    staging name (its inventory commits before the renames). Put it in place."""
    with contextlib.suppress(OSError):
        for candidate in sorted(path.parent.glob(f".{path.name}.new-*")):
            if (candidate / "inventory.db").is_file() and (candidate / "ca.crt").is_file():
                os.replace(candidate, path)
                return


# -- staging from worker processes (engine/workers.py) ----------------------------------------------
def current_umask() -> int | None:
    return _current_umask()


def stage_file(temp: str, data: bytes, mode: int, umask: int | None) -> None:
    """Write a deferred_write's temp file (``O_EXCL``, exactly ``mode`` from its first byte), and
    its folder if someone removed it (a renewal's certs/NAME, as prepare() would remake it)."""
    try:
        _write_new(temp, data, mode, sync=False, umask=umask)
    except GrpcpkiError:
        if not _ensure_dir_of(os.path.dirname(temp), umask):
            raise
        _write_new(temp, data, mode, sync=False, umask=umask)


def stage_archive(temp: str, sources: tuple[Path | str, ...], umask: int | None, *, sync: bool = False) -> None:
    """Build an archive folder (:meth:`StoreTransaction.archive`) at its temp name: the folder,
    its parent if missing (archive/NAME on a first renewal), and a link to each source. A folder
    already there is a retry of the same transaction id: its links are replaced."""
    _ensure_dir_of(temp, umask)
    for source in sources:
        _link_or_copy(source, f"{temp}{os.sep}{os.path.basename(source)}", sync=sync)


def _put_folder(temp: str, final: str) -> None:
    """Roll forward of an archive folder: one rename. Idempotent: a folder renamed by an earlier
    attempt, or never staged (nothing to keep, or a refused item), is simply not there."""
    try:
        os.rename(temp, final)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    # ``final`` already holds files (a serial archived by hand, or a half-done earlier attempt):
    # file ours beside them, newest winning, as per-file renames would.
    for name in os.listdir(temp):
        os.replace(f"{temp}{os.sep}{name}", f"{final}{os.sep}{name}")
    os.rmdir(temp)


# -- small file helpers --------------------------------------------------------------------------------
def _current_umask() -> int | None:
    """The process umask, read without changing it (os.umask can only set it, which would race
    with other threads creating files): Linux shows it in /proc/self/status. None elsewhere."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _write_new(path: Path | str, data: bytes, mode: int, *, sync: bool, umask: int | None = None) -> None:
    """Write a new file with exactly ``mode`` (``umask``: the process umask, if known)."""
    try:
        try:
            # Temp names carry the transaction's random id, so the file is normally new, and a
            # new file gets ``mode`` minus the umask from its first instant.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            exact = umask is not None and not umask & mode
        except FileExistsError:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
            exact = False
    except OSError as exc:
        raise GrpcpkiError(f"cannot write {path}: {exc.strerror}", "check permissions and free space") from None
    try:
        if not exact:
            # The umask cleared bits of ``mode`` (or a leftover had others): set it exactly,
            # before the first byte, so a key is never readable by others. With the usual 022
            # nothing is cleared from 0600 or 0644, and this call is saved (one per file of a batch).
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except OSError as exc:
        raise GrpcpkiError(f"cannot write {path}: {exc.strerror}", "check permissions and free space") from None
    finally:
        os.close(fd)


def _sweep(directory: Path) -> None:
    """Delete leftovers of writes that can no longer finish: ``.NAME.*.tmp`` and ``.NAME.bak``
    files (grpcpki before the journal wrote them and never cleaned up after a kill). The lock is
    held and every journal was replayed, so nothing live has such a name."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith((TEMP_SUFFIX, ".bak")) and entry.is_file():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _link_or_copy(source: Path | str, target: Path | str, *, sync: bool) -> None:
    try:
        # A hard link shares the inode: no bytes copied, and the mode (0600 for keys) is the
        # original's from the first instant. The rename of the live path later leaves it alone.
        try:
            os.link(source, target)
        except FileExistsError:
            os.unlink(target)  # a leftover under our temp name (the name carries a random id: rare)
            os.link(source, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK, errno.EACCES):
            raise GrpcpkiError(f"cannot archive {source}: {exc.strerror}", "check permissions") from None
    mode = os.stat(source).st_mode & 0o777
    _write_new(target, Path(source).read_bytes(), mode, sync=sync)


def _make_durable(root: Path, directories: set[str] | set[Path], small: bool) -> None:
    if not directories:
        return
    if small:
        for directory in directories:
            fsync_dir(directory)
    else:
        sync_filesystem(root)


def _ensure_dir_of(folder: str, umask: int | None = None) -> bool:
    """Create ``folder`` (a file's folder) if it is missing; True if it had to be created."""
    # 0700: every folder below the PKI root that grpcpki creates may hold a private key.
    try:
        # One mkdir(2) answers both questions (is it there? make it), where a stat, a mkdir and
        # a chmod did: a renew of 10,000 makes 10,000 archive/NAME/SERIAL folders.
        os.mkdir(folder, PRIVATE_DIR_MODE)
    except FileExistsError:
        return False
    except FileNotFoundError:
        ensure_dir(Path(folder), PRIVATE_DIR_MODE)  # a missing parent too (archive/NAME): the careful path
        return True
    except OSError as exc:
        raise GrpcpkiError(f"cannot create directory {folder}: {exc.strerror}",
                           "check the path and its permissions") from None
    if umask is None or umask & PRIVATE_DIR_MODE:
        os.chmod(folder, PRIVATE_DIR_MODE)
    return True


def _rmdir_if_empty(root: Path, directory: Path) -> None:
    # Only per-certificate folders (certs/NAME, archive/NAME/SERIAL, archive/NAME): never the
    # top-level ones people and tools expect to find.
    while len(directory.relative_to(root).parts) >= 2:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


__all__ = [
    "CRASH_ENV",
    "JOURNAL_DIR",
    "StoreTransaction",
    "crash_point",
    "exchange",
    "pending_journals",
    "recover",
    "run_transaction",
    "sync_filesystem",
    "write_journal",
]
