"""Atomic file writes: a file is either the old one or the new one, never a half-written mix.

:func:`atomic_write` writes into a temporary file beside the target (``.{name}.XXXXXXXX.tmp``),
flushes and ``fsync``s it, ``os.replace``s it over the target and ``fsync``s the folder, so a
crash at any moment leaves the previous file intact.

The new file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it
replaces, or, for a new file, ``0o666`` less the process umask. (``tempfile.mkstemp`` creates
``0o600`` files, which would silently make a shared adapter folder or a LaMP submission unreadable
to the rest of a team.) Files of users' own data (history files, feedback events) pass
``private=True``: a new one is ``0o600``, readable by its owner only; a file whose owner gave it
other permissions keeps them.

A process killed mid-write cannot remove its temporary file; the next :func:`atomic_write` to the
same path does. It must not remove the temporary file of a write that is still running (another
thread or process saving the same path), so every writer holds an exclusive ``flock`` on its
temporary file until it has been renamed: the kernel drops the lock when the writer dies, and a
temporary file that can be locked belongs to nobody. Where ``fcntl`` is missing (Windows), an
open file cannot be deleted anyway, so removing what can be removed is just as safe.

This module sits at the bottom of the package (it imports nothing from it), so any module that
writes a file can use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, Literal, TextIO, overload

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "remove_abandoned_temp_files"]


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["wb"] = "wb",
    *,
    encoding: None = None,
    private: bool = False,
) -> contextlib.AbstractContextManager[BinaryIO]: ...


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["w"],
    *,
    encoding: str = "utf-8",
    private: bool = False,
) -> contextlib.AbstractContextManager[TextIO]: ...


def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["wb", "w"] = "wb",
    *,
    encoding: str | None = None,
    private: bool = False,
) -> contextlib.AbstractContextManager[IO]:  # type: ignore[type-arg]
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Example:
        ```python
        with atomic_write("out.json", "w") as stream:
            json.dump(document, stream)
        ```

    The folder of ``path`` is created when missing. Temporary files that earlier writes to
    ``path`` left behind when they were killed are removed first. If the block raises, the
    temporary file is removed and ``path`` is untouched.

    Args:
        path: The file to write.
        mode: ``"wb"`` for bytes, ``"w"`` for text.
        encoding: The text encoding (``"w"`` only; UTF-8 when ``None``).
        private: Create a new file readable by its owner only (``0o600``), for users' data.
            False: ``0o666`` less the umask, as ``open()``. An existing file keeps its mode.

    Returns:
        A context manager that yields the open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(
            f"atomic_write writes whole files: mode must be 'wb' or 'w', got {mode!r}."
        )
    if mode == "wb" and encoding is not None:
        raise ValueError("atomic_write: encoding applies to mode 'w' only.")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    return _atomic_write(Path(path), mode, encoding, 0o600 if private else 0o666)


@contextlib.contextmanager
def _atomic_write(
    target: Path, mode: str, encoding: str | None, new_mode: int
) -> Iterator[IO]:  # type: ignore[type-arg]
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temp_files(target)
    fd, tmp_name = _locked_temp_file(target, new_mode)
    try:
        _keep_mode(fd, tmp_name, target)
        with os.fdopen(fd, mode, encoding=encoding) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
            if fcntl is not None:
                # Renamed while the lock is still held: a cleaner never sees it unlocked.
                os.replace(tmp_name, target)
        if fcntl is None:
            os.replace(tmp_name, target)  # Windows cannot rename a file that is still open
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)


def _temp_pattern(target: Path) -> re.Pattern[str]:
    # ".{name}.{random}.tmp" names (_create_temp_file; older versions used tempfile.mkstemp's
    # [A-Za-z0-9_] names); the random part has no dot, so the temp files of "h.zip.bak" never
    # match those of "h.zip".
    return re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]+\.tmp\Z")


# What tempfile.mkstemp opens with (binary on Windows), less its 0o600 mode (see _create_temp_file).
_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp_file(target: Path, new_mode: int) -> tuple[int, str]:
    """Create a new file beside ``target`` with ``new_mode``, which the kernel cuts by the umask.

    ``tempfile.mkstemp`` always asks for ``0o600``; asking for ``0o666`` is what ``open()`` does,
    and lets the kernel apply the umask (reading it with ``os.umask`` would change it for every
    thread for an instant).
    """
    while True:
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, _TEMP_FLAGS, new_mode), name
        except FileExistsError:  # 48 random bits taken: draw again
            continue


def _keep_mode(fd: int, tmp_name: str, target: Path) -> None:
    """Give the temporary file the permission bits of the file it will replace, if any."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:  # a new file: the umask already applied
        return
    with contextlib.suppress(OSError):  # a file system without modes (some network mounts)
        os.chmod(fd if os.chmod in os.supports_fd else tmp_name, mode)


def _locked_temp_file(target: Path, new_mode: int) -> tuple[int, str]:
    """Create a temporary file beside ``target`` and hold an exclusive lock on it."""
    while True:
        fd, name = _create_temp_file(target, new_mode)
        if fcntl is None:
            return fd, name
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return fd, name
        # A cleaner removed it in the instant between its creation and our lock: take another.
        os.close(fd)


def remove_abandoned_temp_files(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files that killed writes to ``path`` left beside it.

    A temporary file that a running write still holds is kept.

    Args:
        path: The target file whose leftovers to remove.

    Returns:
        How many files were removed.
    """
    target = Path(path)
    pattern = _temp_pattern(target)
    try:
        names = [entry.name for entry in os.scandir(target.parent) if pattern.match(entry.name)]
    except OSError:  # no folder yet, or not readable: nothing to clean
        return 0
    return sum(_remove_if_abandoned(target.parent / name) for name in names)


def _remove_if_abandoned(path: Path) -> bool:
    if fcntl is None:
        try:
            os.unlink(path)  # fails on Windows while a live writer holds the file open
        except OSError:
            return False
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # already gone (its writer finished, or another cleaner was faster)
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            return False
        try:
            os.unlink(path)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename itself (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
