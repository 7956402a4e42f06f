"""Certificate names for shell completion: a read-only peek at the inventory.

Runs on every <TAB>, so it opens inventory.db read-only (never creating or migrating it, as
``Inventory`` would), asks one indexed query, and answers nothing rather than raising: a shell
completion that prints a traceback into the user's prompt is worse than none.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

INVENTORY = "inventory.db"  # engine.pki.INVENTORY; not imported, so a <TAB> never loads cryptography

LEAF_KINDS = ("server", "client")


def certificate_names(pki_dir: Path | str, *, kind: str | None = None, prefix: str = "") -> list[str]:
    """Names of active leaf certificates (of ``kind`` if given) starting with ``prefix``, sorted."""
    db = Path(pki_dir) / INVENTORY
    if not db.is_file():
        return []
    kinds = (kind,) if kind in LEAF_KINDS else LEAF_KINDS
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            rows = connection.execute(
                f"SELECT DISTINCT name FROM certificates WHERE status = 'active' "
                f"AND kind IN ({','.join('?' * len(kinds))}) AND substr(name, 1, ?) = ? ORDER BY name",
                (*kinds, len(prefix), prefix),
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return []
    return [str(row[0]) for row in rows]


__all__ = ["certificate_names"]
