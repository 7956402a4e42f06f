"""SIGINT and SIGTERM as a request to stop, for the commands that run until told to.

`serve`, `ca-server`, `renew --watch` and a `greet` loop end their work in hand, then stop. The
handler only records the signal: raising KeyboardInterrupt into arbitrary code can be lost
inside grpc or leave a store pass half done, and a handler that took a lock could deadlock
against the interrupted main thread. Installing a handler also undoes a SIGINT ignored by
whoever started the process (an ignored disposition survives exec).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator


class StopRequest:
    """Whether SIGINT/SIGTERM arrived, and which came first."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._event = threading.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    @property
    def name(self) -> str:
        return self.received[0] if self.received else "signal"

    def wait(self, seconds: float | None = None) -> bool:
        """Sleep up to ``seconds`` (None: until a signal), waking early on one; True if stopped."""
        deadline = None if seconds is None else time.monotonic() + seconds
        # Short waits in a loop: the handler runs on this thread, between two of them.
        while not self._event.is_set():
            left = 0.5 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            self._event.wait(min(left, 0.5))
        return self._event.is_set()

    def _record(self, signum: int, _frame: object) -> None:
        self.received.append(signal.Signals(signum).name)
        self._event.set()


def stop_requested_by_signals() -> StopRequest:
    """SIGINT/SIGTERM recorded from now on, for a command that runs until it is stopped."""
    request = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request._record)
    return request


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """The same for a loop inside a command: the previous handlers come back after it."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_requested_by_signals()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
