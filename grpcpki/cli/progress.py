"""Progress bars refreshed by the command's own thread.

rich's ``Progress`` refreshes from a thread of its own by default. A batch that forks signing
workers (engine/workers.py) forks only while no other thread runs, so the batch commands build
their bars with ``auto_refresh=False`` and call :func:`refresh_now` as work advances.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

_INTERVAL = 0.1  # seconds: rich's own default is 10 refreshes a second
_last: dict[int, float] = {}


def refresh_now(progress: Progress) -> None:
    """Redraw ``progress`` if the last redraw is older than a tenth of a second."""
    now = time.monotonic()
    if now - _last.get(id(progress), 0.0) >= _INTERVAL:
        _last[id(progress)] = now
        progress.refresh()
