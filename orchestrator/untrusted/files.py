"""Files an agent may have made, opened the one safe way: beneath a root Cadre chose, component by
component, never through a symlink, regular files only, and never more than a stated number of bytes.

An agent controls every name below its worktree and its io folder: `handoff.json` may be a symlink to
`/etc/shadow`, a FIFO that blocks whoever opens it, or a sparse file of 100 GB. Nothing here follows a
symlink (each component is opened with `O_NOFOLLOW` relative to its parent's descriptor), blocks on a
FIFO (`O_NONBLOCK`, then a regular-file check on the open descriptor) or reads past its bound.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
CHUNK = 1 << 16


class RefusedPath(ValueError):
    """A path Cadre will not read or write for an agent (a symlink, not a regular file, too large, outside
    its root); the message is one line naming the path and why."""


def _parts(relative: str | os.PathLike[str]) -> list[str]:
    text = os.fspath(relative)
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if text.startswith("/") or not parts or ".." in parts or "\0" in text:
        raise RefusedPath(f"{text!r} is not a path inside the workspace")
    return parts


def _refusal(name: str, exc: OSError) -> RefusedPath:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) or exc.errno == errno.EMLINK:
        return RefusedPath(f"{name!r} goes through a symlink or a non-directory")
    if exc.errno == errno.ENOENT:
        return RefusedPath(f"no file {name!r}")
    return RefusedPath(f"cannot open {name!r}: {exc.strerror}")


@contextmanager
def _parent_of(root: Path, parts: list[str], create: bool = False) -> Iterator[int]:
    """A descriptor of the directory holding the last of `parts`, reached from `root` without symlinks."""
    fd = os.open(root, _DIRECTORY_FLAGS)
    try:
        for name in parts[:-1]:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal("/".join(parts), exc) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _read_open(fd: int, name: str, max_bytes: int, whole: bool) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise RefusedPath(f"{name!r} is not a regular file")
    if whole and info.st_size > max_bytes:
        raise RefusedPath(f"{name!r} is {info.st_size} bytes, more than the {max_bytes} allowed")
    chunks, left = [], max_bytes + (1 if whole else 0)
    while left > 0:
        chunk = os.read(fd, min(CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if whole and len(data) > max_bytes:  # it grew while we read it
        raise RefusedPath(f"{name!r} is more than the {max_bytes} bytes allowed")
    return data


def read_bytes(root: Path, relative: str | os.PathLike[str], max_bytes: int, whole: bool = True) -> bytes:
    """The bytes of the regular file `relative` below `root`, reached without following any symlink.

    `whole`: the file must fit in `max_bytes` (RefusedPath otherwise); else its first `max_bytes` bytes.
    RefusedPath for a symlink on the way, a FIFO, a device, a directory or a missing file."""
    parts = _parts(relative)
    with _parent_of(Path(root), parts) as parent:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | _FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise _refusal(os.fspath(relative), exc) from None
        try:
            return _read_open(fd, os.fspath(relative), max_bytes, whole)
        finally:
            os.close(fd)


def read_text(root: Path, relative: str | os.PathLike[str], max_bytes: int, whole: bool = True) -> str:
    """`read_bytes` decoded as UTF-8 (undecodable bytes replaced)."""
    return read_bytes(root, relative, max_bytes, whole).decode("utf-8", "replace")


def read_file(path: Path, max_bytes: int, whole: bool = True) -> bytes:
    """`read_bytes` of one file named by its full path: its folder is trusted (Cadre made it), its last
    component is not (an agent could have replaced it with a symlink or a FIFO)."""
    path = Path(path)
    return read_bytes(path.parent, path.name, max_bytes, whole)


def write_bytes(root: Path, relative: str | os.PathLike[str], data: bytes) -> None:
    """Create or replace the regular file `relative` below `root` with `data`; missing folders are made.

    Never writes through a symlink (on the way or at the end) and never into a FIFO or device."""
    parts = _parts(relative)
    with _parent_of(Path(root), parts, create=True) as parent:
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | _FILE_FLAGS, 0o644, dir_fd=parent)
        except OSError as exc:
            raise _refusal(os.fspath(relative), exc) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RefusedPath(f"{os.fspath(relative)!r} is not a regular file")
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def is_regular_file(root: Path, relative: str | os.PathLike[str]) -> bool:
    """Whether `relative` below `root` is a regular file reached without a symlink (no file is opened)."""
    try:
        parts = _parts(relative)
        with _parent_of(Path(root), parts) as parent:
            return stat.S_ISREG(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode)
    except (OSError, RefusedPath):
        return False
