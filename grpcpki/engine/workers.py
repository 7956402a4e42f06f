"""Signing and staging in forked worker processes (``--jobs``, issue 10).

A batch of thousands of certificates (``renew --all``, ``apply``, ``issue`` of many) spends most
of its CPU making keys, signing and writing files: work that needs the CA key and nothing else of
the store. Above :data:`POOL_MIN` certificates the batch forks up to ``jobs`` workers *after*
the journal is written (journal.py's docstring, "Staging by worker processes"):

* a worker inherits the CA (its key included) and the list of jobs through ``fork``: nothing is
  serialized on the way in, and a job is sent as two integers (a range of the list);
* it signs its range, then hard-links what each certificate replaces into ``archive/`` and
  writes the new key (``O_EXCL``, 0600), certificate and chain, all to temp names the journal
  already lists, and sends back only the facts the rows need (serial, dates, fingerprint...):
  never a private key;
* the main process keeps everything else: the lock, the journal, the rows (written as ranges
  come back), the one sync, the commit point and the renames.

Only where forking is safe and pays: a CA key in a file (a PKCS#11 session cannot cross a fork:
token CAs sign in the main process), no other thread running in the process, native ones
included (a forked child gets only the forking thread, and any lock another thread held stays
held), Linux (workers are tied to the main process with ``PR_SET_PDEATHSIG``, so a SIGKILL of
the main process kills them before they could write behind the next command's recovery). Otherwise, or for a small batch, the
caller signs in-process as before.

A worker that fails (killed, disk full) fails the whole batch: the main process kills the others,
waits for them, and the store transaction rolls back every temp file the journal lists. A
certificate the CA refuses (a name outside its constraints) fails alone, as in-process.

``GRPCPKI_TEST_WORKER_CRASH=N`` (tests only) makes a worker SIGKILL itself once it has staged N
certificates, before it reports them.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import pickle
import selectors
import signal
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from grpcpki.engine.certs import CA
from grpcpki.engine.errors import GrpcpkiError, StoreError

WORKER_CRASH_ENV = "GRPCPKI_TEST_WORKER_CRASH"
POOL_MIN_ENV = "GRPCPKI_TEST_POOL_MIN"
# Below this many certificates a batch signs in-process: forking and the pipes cost ~10 ms, about
# what 40 P-256 certificates take to sign, and a small batch is over before a pool would pay.
POOL_MIN = 128
# Certificates per message: small enough that a slow worker (a shared core) takes no big share,
# large enough that the pipes and pickling stay a few percent.
CHUNK = 48
# How often ``run_pool``'s ``flush`` runs while the workers sign (see run_pool).
FLUSH_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_HEADER = struct.Struct("!I")
_RANGE = struct.Struct("!II")
T = TypeVar("T")


def default_jobs() -> int:
    """The CPUs this process may run on (``os.cpu_count`` counts the machine's, not our share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def pool_min() -> int:
    text = os.environ.get(POOL_MIN_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else POOL_MIN


@dataclass(frozen=True)
class Refused:
    """A certificate the CA would not sign (nothing of it was written)."""

    message: str
    hint: str | None


def pool_size(count: int, jobs: int | None, ca: CA) -> int:
    """How many workers a batch of ``count`` gets: 0 means sign in-process (and why not is in the
    module docstring)."""
    wanted = default_jobs() if jobs is None else jobs
    if wanted < 2 or count < pool_min() or ca.key_uri is not None:
        return 0
    if not sys.platform.startswith("linux") or _prctl() is None:
        return 0
    if _threads() > 1:
        return 0  # a fork would copy locks other threads hold (rich's refresh thread, an executor...)
    return min(wanted, -(-count // CHUNK))


def _threads() -> int:
    """Threads in this process, native ones included (grpc's C core starts threads that the
    threading module never sees): Linux lists them all in /proc/self/task."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def run_pool(
    task: Callable[[int, int], list[T]], count: int, *, workers: int, on_result: Callable[[int, T], None],
    flush: Callable[[], None] | None = None,
) -> None:
    """Run ``task(start, end)`` over ``range(count)`` in ranges, in ``workers`` forked processes:
    it returns one value per index, and ``on_result(i, value)`` runs in this process as each
    range is done (in no set order). ``task`` and what it reads are inherited through fork, never
    pickled; its return values are pickled back (facts, never keys).

    ``flush`` (the batch's ``syncfs``) runs every FLUSH_SECONDS in one more forked process while
    the workers run: the disk then writes what they staged while they sign the rest, instead of
    all of it in the one sync before the commit point (a third of a second at 10,000 leaves).
    A process, not a thread: this process stays single-threaded, so the next pool may fork (a
    joined thread lingers in /proc/self/task for a moment after join() returns).

    A task that raises fails the pool: StoreError here, after every worker has exited (as after
    any return or raise of this function), so nothing writes behind the caller's roll back.
    """
    gc.freeze()  # the inherited heap stays shared: a collection in a worker would touch every page
    children: dict[int, _Child] = {}
    selector = selectors.DefaultSelector()
    flusher: _Child | None = None
    try:
        for _ in range(workers):
            child = _fork(task)
            children[child.pid] = child
            selector.register(child.results, selectors.EVENT_READ, child)
        if flush is not None:
            flusher = _fork_flusher(flush, [fd for c in children.values() for fd in (c.tasks, c.results)])
        ranges = [(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
        ranges.reverse()
        # Two ranges in hand each, so a worker never waits for the main process between them.
        for _ in range(2):
            for child in children.values():
                _send_next(child, ranges)
        done = 0
        while done < count:
            for key, _mask in selector.select():
                child = key.data
                message = _read_message(child.results)
                if message is None:
                    if child.tasks < 0 and child.pending == 0:
                        selector.unregister(child.results)  # done, and told so: its end of file
                        continue
                    raise _died(child)
                start, results = message
                if isinstance(results, _Failure):
                    raise StoreError(f"a signing worker failed: {results.text}", results.hint)
                child.pending -= 1
                _send_next(child, ranges)
                for offset, value in enumerate(results):
                    on_result(start + offset, value)
                done += len(results)
        for child in children.values():
            _close(child)
        if flusher is not None:
            _close(flusher)  # its end of file: it stops after the flush in progress, if any
            os.waitpid(flusher.pid, 0)
            flusher = None
        for child in list(children.values()):
            _, status = os.waitpid(child.pid, 0)
            del children[child.pid]
            os.close(child.results)
            if status != 0:
                raise _died(child, status)
    finally:
        selector.close()
        gc.unfreeze()
        for child in [*children.values(), *([flusher] if flusher is not None else [])]:
            # An error or ^C here: no worker may write after the caller rolls back.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
            _close(child)
            with contextlib.suppress(OSError):
                os.close(child.results)


@dataclass
class _Child:
    pid: int
    tasks: int  # our end of its task pipe (-1: closed)
    results: int
    pending: int = 0


@dataclass(frozen=True)
class _Failure:
    text: str
    hint: str | None


def _send_next(child: _Child, ranges: list[tuple[int, int]]) -> None:
    if ranges:
        os.write(child.tasks, _RANGE.pack(*ranges.pop()))
        child.pending += 1
    elif child.pending == 0:
        _close(child)  # nothing left: the worker exits at end of file


def _close(child: _Child) -> None:
    if child.tasks >= 0:
        with contextlib.suppress(OSError):
            os.close(child.tasks)
        child.tasks = -1


def _died(child: _Child, status: int | None = None) -> StoreError:
    if status is None:
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(child.pid, 0)
    how = "exited unexpectedly"
    if status is not None and os.WIFSIGNALED(status):
        how = f"was killed by signal {os.WTERMSIG(status)}"
    elif status is not None and os.WIFEXITED(status):
        how = f"exited with status {os.WEXITSTATUS(status)}"
    return StoreError(
        f"a signing worker (pid {child.pid}) {how}; nothing was changed",
        "run the command again (or with --jobs 1 to sign in one process)",
    )


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int) -> tuple[int, list[Any] | _Failure] | None:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    if body is None:
        return None
    message: tuple[int, list[Any] | _Failure] = pickle.loads(body)
    return message


def _fork(task: Callable[[int, int], list[Any]]) -> _Child:
    task_read, task_write = os.pipe()
    result_read, result_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        code = 1
        try:
            os.close(task_write)
            os.close(result_read)
            code = _work(task, task_read, result_write, parent)
        finally:
            os._exit(code)  # no atexit, no finalizers: the inventory's connections are the parent's
    os.close(task_read)
    os.close(result_write)
    return _Child(pid, task_write, result_read)


def _fork_flusher(flush: Callable[[], None], inherited: list[int]) -> _Child:
    """run_pool's flushing process: ``flush()`` every FLUSH_SECONDS until its pipe is closed.
    ``inherited``: the workers' pipe ends, closed in it (a worker's end of file must not wait for it)."""
    stop_read, stop_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # never returns
        try:
            for fd in (stop_write, *inherited):
                os.close(fd)
            gc.disable()  # as in a worker: a collection here could finalize the parent's objects
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            prctl = _prctl()
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == parent:
                with selectors.DefaultSelector() as selector:
                    selector.register(stop_read, selectors.EVENT_READ)
                    # Only an early start: the sync before the commit point is what makes it durable.
                    with contextlib.suppress(OSError):
                        while not selector.select(FLUSH_SECONDS):
                            flush()
        finally:
            os._exit(0)
    os.close(stop_read)
    return _Child(pid, stop_write, -1)


def _work(task: Callable[[int, int], list[Any]], tasks: int, results: int, parent: int) -> int:
    gc.disable()  # nothing here makes cycles, and a collection could finalize the parent's objects
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the whole group: the main process decides
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        return 1  # the main process died before prctl: it must not find files written after it
    crash_after = _worker_crash_target()
    finished = 0
    while True:
        header = _read_exact(tasks, _RANGE.size)
        if header is None:
            return 0
        start, end = _RANGE.unpack(header)
        payload: tuple[int, list[Any] | _Failure]
        try:
            out = task(start, end)
            assert len(out) == end - start
            finished += len(out)
            if crash_after is not None and finished >= crash_after:
                os.kill(os.getpid(), signal.SIGKILL)
            payload = (start, out)
        except GrpcpkiError as exc:
            payload = (start, _Failure(exc.message, exc.hint))
        except Exception as exc:  # noqa: BLE001 - reported to the main process, which raises it
            payload = (start, _Failure(f"{type(exc).__name__}: {exc}", None))
        body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(results, _HEADER.pack(len(body)) + body)
        if isinstance(payload[1], _Failure):
            return 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _worker_crash_target() -> int | None:
    text = os.environ.get(WORKER_CRASH_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


_PRCTL: Callable[..., int] | None | bool = False


def _prctl() -> Callable[..., int] | None:
    """libc's prctl(2), or None where there is none (the pool is then not used)."""
    global _PRCTL
    if _PRCTL is False:
        _PRCTL = None
        with contextlib.suppress(OSError, AttributeError):
            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    return _PRCTL  # type: ignore[return-value]


__all__ = ["POOL_MIN", "Refused", "default_jobs", "pool_size", "run_pool"]
