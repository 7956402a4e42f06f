"""Files on disk: atomic writes with the right modes, and bounded reads of input files.

Groups of writes that must land together with inventory rows go through the store's journal
(:mod:`grpcpki.engine.journal`); this module holds the single-file primitives it builds on.
A crash or an error half-way must never leave a certificate beside a key it does not match,
so every file is written to a temp file in the same directory, fsynced, then renamed
(rename is atomic within a filesystem on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from grpcpki.engine.errors import GrpcpkiError, NotFoundError

PRIVATE_FILE_MODE = 0o600  # keys: owner only (mkcert, ssh and BoringSSL's own tooling agree)
PUBLIC_FILE_MODE = 0o644  # certificates are public
PRIVATE_DIR_MODE = 0o700


def ensure_dir(path: Path, mode: int = PRIVATE_DIR_MODE, *, exact: bool = False) -> None:
    """Create ``path`` and any missing parents with exactly ``mode``, whatever the umask.

    mkdir(2) applies the umask (under ``umask 000`` a 0700 request still gives 0700, but a
    default request gives 0777) and Path.mkdir(parents=True) gives parents the default mode,
    so each folder created here is chmod-ed explicitly. An existing folder keeps its mode unless
    ``exact`` (init-ca uses it on the PKI folder: docs/security.md, "File modes").
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    try:
        for folder in reversed(missing):
            try:
                os.mkdir(folder, mode)
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # made by a concurrent command: its mode is that command's business
            os.chmod(folder, mode)
        if exact and not missing:
            os.chmod(path, mode)
    except OSError as exc:
        raise GrpcpkiError(f"cannot create directory {path}: {exc.strerror}", "check the path and its permissions") from None


def _stage(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to a synced temp file beside ``path`` (same filesystem, so a rename is atomic)."""
    import tempfile  # here: commands that only read files (apply with nothing to change) skip it

    ensure_dir(path.parent, PRIVATE_DIR_MODE if mode == PRIVATE_FILE_MODE else 0o755)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise GrpcpkiError(f"cannot write in {path.parent}: {exc.strerror}", "check permissions and free space") from None
    try:
        # mkstemp creates 0600 already; chmod before any byte lands so a key is never world-readable.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise GrpcpkiError(f"cannot write {path}: {exc.strerror}", "check permissions and free space") from None
        raise
    return Path(tmp_name)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    tmp = _stage(path, data, mode)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise GrpcpkiError(f"cannot write {path}: {exc.strerror}", "check permissions and free space") from None
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable (ext4/xfs need the directory entry flushed).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


FileStamp = tuple[int, int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """(inode, size, mtime_ns, ctime_ns), or None if the file is missing: changes whenever the file
    is replaced or rewritten, for a cheap "did it change?" before re-reading it.

    inode catches an atomic rename-over; size and mtime_ns an in-place rewrite; ctime_ns a rewrite
    that kept size and mtime (cp -p).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# Largest file grpcpki reads as input (certificates, chains, keys, trust bundles, CRLs, CSRs).
# Mozilla's whole root store is ~220 KB of PEM and a CRL listing 100,000 serials ~5 MB of PEM;
# 8 MiB fits both with room to spare, while `--cert /dev/zero` or a multi-GB file is refused
# before it is read instead of exhausting memory.
MAX_INPUT_BYTES = 8 * 1024 * 1024

_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    return next((words for test, words in _FILE_KINDS if test(mode)), "not a regular file")


def read_file(path: Path | str, what: str = "file", *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or one GrpcpkiError saying why not.

    FIFOs, devices and sockets are refused: reading /dev/zero never ends and opening a FIFO
    blocks until a writer appears. The file is opened with O_NONBLOCK (so even a FIFO swapped
    in after the stat cannot block the open) and checked again with fstat on the open
    descriptor, which is the file actually read.
    """
    path = Path(path)
    shown = _shown(path)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            _refuse_kind(before.st_mode, what, shown)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except GrpcpkiError:
        raise
    except FileNotFoundError:
        raise NotFoundError(f"{what} {shown} does not exist", "check the path") from None
    except PermissionError:
        raise GrpcpkiError(f"permission denied reading {what} {shown}", "run as the owner of the file") from None
    except OSError as exc:
        # ENAMETOOLONG, ELOOP, ENOTDIR, EIO...: the OS's words are the clearest ones.
        raise GrpcpkiError(f"cannot read {what} {shown}: {exc.strerror}", "check the path") from None
    except ValueError:  # an embedded NUL byte
        raise GrpcpkiError(f"cannot read {what} {shown}: the path contains a NUL byte", "check the path") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            _refuse_kind(opened.st_mode, what, shown)
        if opened.st_size > limit:
            raise _too_large(what, shown, limit)
        chunks: list[bytes] = []
        total = 0
        while True:
            # Read one byte past the limit: a file that grew after the fstat is caught too.
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _too_large(what, shown, limit)
        return b"".join(chunks)
    except OSError as exc:
        raise GrpcpkiError(f"cannot read {what} {shown}: {exc.strerror}", "check the file") from None
    finally:
        os.close(fd)


def _refuse_kind(mode: int, what: str, shown: str) -> None:
    if stat.S_ISDIR(mode):
        raise NotFoundError(f"{what} {shown} is a directory, not a file", "point at the file inside it")
    raise GrpcpkiError(
        f"{what} {shown} is {_kind_of(mode)}, not a regular file",
        "point at a regular file; to read from a pipe, save it to a file first",
    )


def _too_large(what: str, shown: str, limit: int) -> GrpcpkiError:
    if limit < 1 << 20:  # a small cap (a password file): the size in bytes, not "0 MiB"
        return GrpcpkiError(f"{what} {shown} is larger than {limit} bytes", "point at the right file")
    return GrpcpkiError(
        f"{what} {shown} is larger than {limit // (1024 * 1024)} MiB, far more than any certificate, key or bundle",
        "point at the right file",
    )


def _shown(path: Path) -> str:
    """The path as printed in a message: long hostile arguments are cut so the message stays one line."""
    text = str(path)
    return text if len(text) <= 200 else text[:100] + "..." + text[-40:]
