"""``grpcpki apply`` with nothing to change, without opening the store (issue 10).

A second ``apply`` of the same manifest is the common case (cron runs it every night), and the
full path paid for what only a change needs: importing cryptography and SQLAlchemy, opening the
store (:meth:`Pki.open`: inventory, migrations check, recovery check), building a ``Record`` per
row, taking the lock. :func:`plan_if_unchanged` reads the inventory with the standard library's
``sqlite3`` instead, through the read-only opener ``grpcpki list`` uses
(:func:`grpcpki.engine.listing.open_current_inventory`: no ``--db``/``GRPCPKI_DB``, ``inventory.db``
and ``ca.crt`` present, no journal left to recover, the schema at the Alembic head), turns the
active leaves into plain rows, and runs the same planning code as the full plan
(:func:`grpcpki.engine.manifest.decide`: drift in kind, names, usages and key type, the renewal
rule of ``grpcpki renew``, the current CA generation) and the same [ca] check
(:func:`~grpcpki.engine.manifest.ca_notes`, which reads the root's row, not its certificate).

It only ever says "nothing to change". If the plan finds anything to do, or the inventory is not
one this reader may read, it returns None and the caller takes the full path, which opens the
store and plans again under the lock before changing anything. A stale answer is impossible in
the direction that matters: the rows are one snapshot of a committed state (WAL, read-only), and
a change in progress shows as a journal, which sends the command down the full path.
tests/speed/test_apply_plan.py holds both plans to the same verdict on every case that matters.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from grpcpki.engine.listing import _parse, _string_list, open_current_inventory
from grpcpki.engine.manifest import Manifest, Plan, ca_notes, decide

_LEAVES = (
    "SELECT kind, name, sans, eku, key_type, ca_generation, not_before, not_after FROM certificates"
    " WHERE status = 'active' AND kind IN ('server', 'client')"
)
# Inventory.iter_records(kinds=("root",)) order: the full plan reads the first of the current
# generation's active roots.
_ROOTS = (
    "SELECT subject, key_type FROM certificates WHERE status = 'active' AND kind = 'root' AND ca_generation = ?"
    " ORDER BY not_after, name LIMIT 1"
)


class LeafRow(NamedTuple):
    """An active leaf as planning reads it (:class:`grpcpki.engine.manifest.ActiveLeaf`)."""

    kind: str
    name: str
    sans: tuple[str, ...]
    eku: tuple[str, ...]
    key_type: str
    ca_generation: int | None
    not_before: datetime
    not_after: datetime


class RootRow(NamedTuple):
    subject: str
    key_type: str


def plan_if_unchanged(pki_dir: Path | str, manifest: Manifest, *, now: datetime | None = None) -> Plan | None:
    """The plan when it changes nothing, read without SQLAlchemy or cryptography; None when the
    full path must decide (something to do, or an inventory this reader must not read)."""
    connection = open_current_inventory(pki_dir)
    if connection is None:
        return None
    try:
        # Pki.generation: the meta value, "1" when absent.
        value = connection.execute("SELECT value FROM meta WHERE key = 'ca_generation'").fetchone()
        generation = int((value[0] if value else None) or 1)
        leaves = [
            LeafRow(kind, name, _string_list(sans), _string_list(eku), key_type, ca_generation,
                    _parse(not_before), _parse(not_after))
            for kind, name, sans, eku, key_type, ca_generation, not_before, not_after in connection.execute(_LEAVES)
        ]
        changes, unchanged, unmanaged = decide(manifest, leaves, generation, now=now)
        if changes:
            return None
        root = connection.execute(_ROOTS, (generation,)).fetchone()
    except (sqlite3.Error, ValueError, TypeError):
        return None  # unreadable or unexpected: the full path says what is wrong, in one line
    finally:
        connection.close()
    notes = tuple(ca_notes(manifest, RootRow(*root) if root else None))
    return Plan(manifest, (), unchanged, unmanaged, notes=notes)


__all__ = ["LeafRow", "RootRow", "plan_if_unchanged"]
