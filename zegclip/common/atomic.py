"""Atomic file writes: the one way checkpoints, run records, caches and prepared files are written.

:func:`write_file` writes to a temporary file beside the target (``.<name>.<pid>-<thread>-<random>.tmp``:
unique per process, thread and call), flushes and fsyncs it, renames it onto the target and fsyncs
the folder. So a reader sees the old file or the new one, never half of one; two processes (DDP
ranks, two runs) writing the same file each use their own temporary name and the last rename
wins with a complete file; a write that fails (a full disk, a read-only folder, no permission)
removes its temporary file (a full disk is not left fuller), leaves the previous file as it was,
and raises :class:`~zegclip.common.errors.WriteError` naming the file, the reason and, for a full disk,
the space it needed and what was free.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from zegclip.common.errors import WriteError

Content = bytes | str | Callable[[BinaryIO], Any]
"""What to write: bytes, text (UTF-8), or a function that writes into a binary file object."""

SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Errors that mean "no room": the message then says how much was needed and free."""


def temp_path(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process, thread or call uses: the process id,
    the thread id and a random part (``.<name>.<pid>-<thread>-<random>.tmp``)."""
    return path.with_name(
        f".{path.name}.{os.getpid()}-{threading.get_native_id()}-{secrets.token_hex(4)}.tmp"
    )


class _Sink:
    """A binary file object that counts the bytes written and remembers the first ``OSError``
    (torch's zip writer turns a failed write into ``RuntimeError: ... unexpected pos``)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.written = 0
        self.failure: OSError | None = None

    def _guard(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as err:
            self.failure = self.failure or err
            raise

    def write(self, data: Any) -> int:
        n = self._guard(self._raw.write, data)
        self.written += len(data)
        return n

    def flush(self) -> None:
        self._guard(self._raw.flush)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._guard(self._raw.close)


def write_file(
    path: str | Path,
    content: Content,
    *,
    what: str = "file",
    error: type[WriteError] = WriteError,
    hint: str = "",
    exclusive: bool = False,
    fsync: bool = True,
) -> Path:
    """Write ``content`` to ``path`` atomically (see the module docstring); returns ``path``.

    Args:
        what: how the message names the file (``checkpoint``, ``run record``, ...).
        error: the :class:`WriteError` subclass to raise; hint: appended to its message (what to do).
        exclusive: create the file only if it does not exist (``FileExistsError`` otherwise): the
            complete file is hard-linked into place, so no reader ever sees it half written.
        fsync: flush the data to the disk before the rename (False for many small files that a
            rerun rewrites, where 5 ms per fsync would dominate).

    A ``content`` function may be called a second time, writing into nothing, after the disk filled
    up: that measures the size the message names.

    Raises:
        WriteError: the file (or its folder) could not be written; the previous file is intact.
        FileExistsError: ``exclusive`` and the file exists.
    """
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    tmp = temp_path(path)
    sink: _Sink | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = _Sink(open(tmp, "xb"))  # noqa: SIM115 (closed below, also on failure)
        if isinstance(data, bytes):
            sink.write(data)
        else:
            data(sink)  # type: ignore[arg-type]
        sink.flush()
        if fsync:
            sink._guard(os.fsync, sink.fileno())
        sink.close()
        if exclusive:
            _link_exclusive(tmp, path, data)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        if sink is not None:
            with contextlib.suppress(OSError):
                sink._raw.close()
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, FileExistsError) and exclusive:
            raise
        cause = _os_error(err, sink)
        if cause is None:
            raise  # not a failed write (an interrupt, a bug in ``content``): unchanged
        size = (
            len(data) if isinstance(data, bytes) else _measure(data) if cause.errno in SPACE_ERRORS else None
        )
        raise failure(
            path, cause, what=what, error=error, hint=hint, needed=size, written=sink.written if sink else 0
        ) from err
    if fsync:
        _fsync_folder(path.parent)
    return path


def probe_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it (a temporary name, removed at once); raises the ``OSError``
    if either cannot be written."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = temp_path(folder / ".write-test")
    with open(probe, "xb"):
        pass
    probe.unlink()


def write_text(path: str | Path, text: str, **options: Any) -> Path:
    """:func:`write_file` for text (UTF-8)."""
    return write_file(path, text, **options)


class _Counter:
    """A binary sink that only counts."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: Any) -> int:
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _measure(content: Callable[[BinaryIO], Any]) -> int | None:
    """The size ``content`` writes, measured by writing it again into nothing (only after a full disk:
    the message can then say how much space the file needs)."""
    counter = _Counter()
    try:
        content(counter)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 (a writer that needs a real file: size unknown)
        return None
    return counter.written


def _link_exclusive(tmp: Path, path: Path, data: Content) -> None:
    """Put the complete ``tmp`` at ``path`` unless ``path`` exists (``FileExistsError``)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:  # a filesystem without hard links: exclusive create, then write
        if err.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.ENOSYS,
            errno.EMLINK,
        ) or not isinstance(data, bytes):
            raise
        with open(path, "xb") as f:
            f.write(data)
    finally:
        tmp.unlink(missing_ok=True)


def _os_error(err: BaseException, sink: _Sink | None) -> OSError | None:
    """The ``OSError`` behind a failed write, if that is what ``err`` is."""
    if isinstance(err, OSError) and not isinstance(err, WriteError):
        return err
    if sink is not None and sink.failure is not None:
        return sink.failure
    context = err.__context__ if isinstance(err, RuntimeError) else None
    while context is not None:
        if isinstance(context, OSError):
            return context
        context = context.__context__
    return None


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: some filesystems refuse to fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def human_size(num: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(num) < 1000 or unit == "GB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1000
    return f"{num:.1f} TB"  # pragma: no cover


def free_space(folder: Path) -> int | None:
    """Bytes free for this user on ``folder``'s filesystem (None if unknown)."""
    for candidate in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            st = os.statvfs(candidate)
            return st.f_bavail * st.f_frsize
    return None


def mount_point(folder: Path) -> Path:
    folder = folder.absolute()
    for candidate in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            if os.path.ismount(candidate):
                return candidate
    return Path("/")


def failure(
    path: Path,
    err: OSError,
    *,
    what: str = "file",
    error: type[WriteError] = WriteError,
    hint: str = "",
    needed: int | None = None,
    written: int = 0,
) -> WriteError:
    """The error for a failed write of ``path``: the file, the reason, and for a full disk the space
    needed (``needed`` bytes if known, else the size of the file it replaces, else more than the
    ``written`` bytes) and the space free on the filesystem."""
    reason = err.strerror or str(err)
    if err.filename and Path(err.filename) != path and not Path(err.filename).name.endswith(".tmp"):
        reason += f" ({err.filename})"
    space, fix = "", ""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a folder this process can write"
    if err.errno in SPACE_ERRORS:
        if needed is not None:
            need = human_size(needed)
        elif path.is_file():
            need = f"about {human_size(path.stat().st_size)} (the size of the file it replaces)"
        elif written:
            need = f"more than {human_size(written)} (written when the disk filled)"
        else:
            need = ""
        free = free_space(path.parent)
        where = mount_point(path.parent if path.parent.exists() else Path(path.anchor or "/"))
        parts = [
            f"it needs {need}" if need else "",
            f"{human_size(free)} free on {where}" if free is not None else "",
        ]
        space = "".join(f"{'; ' if i == 0 else ', '}{p}" for i, p in enumerate(q for q in parts if q))
        fix = "free some space or write to another disk"
    message = f"could not write {what} {path}: {reason}{space}" + "".join(f"; {t}" for t in (fix, hint) if t)
    return error(message)


def raise_write_error(path: Path, err: OSError, **options: Any) -> None:
    """Turn an ``OSError`` met while writing ``path`` (outside :func:`write_file`) into its WriteError."""
    raise failure(path, err, **options) from err
