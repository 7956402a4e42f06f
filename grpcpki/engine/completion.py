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
    """Names of active leaf certificates (of ``kind`` if given) starting with ``prefix``, sorted.

    Without ``kind``, a NAME that is both a server and a client certificate is offered as
    ``server/NAME`` and ``client/NAME``: the bare NAME would be refused as ambiguous.
    """
    db = Path(pki_dir) / INVENTORY
    if not db.is_file():
        return []
    kinds = (kind,) if kind in LEAF_KINDS else LEAF_KINDS
    head, slash, rest = prefix.partition("/")
    bare = rest if slash and head in LEAF_KINDS else prefix  # the NAME part, for the indexed filter
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            rows = connection.execute(
                f"SELECT DISTINCT name, kind FROM certificates WHERE status = 'active' "
                f"AND kind IN ({','.join('?' * len(kinds))}) AND substr(name, 1, ?) = ? ORDER BY name, kind",
                (*kinds, len(bare), bare),
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return []
    by_name: dict[str, list[str]] = {}
    for name, row_kind in rows:
        by_name.setdefault(str(name), []).append(str(row_kind))
    names: list[str] = []
    for name, name_kinds in by_name.items():
        names += [f"{k}/{name}" for k in sorted(name_kinds, reverse=True)] if len(name_kinds) > 1 else [name]
    return [n for n in names if n.startswith(prefix)]


__all__ = ["certificate_names"]
