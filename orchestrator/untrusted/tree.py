"""A worktree an agent wrote, made safe for Cadre's own git, which runs outside the sandbox.

What an agent can leave that would turn Cadre's git against Cadre:
- a nested repository (`sub/.git`, a folder or a `gitdir:` file): git recurses into it with its own
  configuration (filters, fsmonitor...) and runs the agent's programs with Cadre's environment;
- FIFOs, sockets and devices: git and libgit2 would block on them or cannot commit them anyway;
- a symlinked `.gitattributes`, `.gitignore`, `.gitmodules` or `.mailmap`: git itself refuses to read them;
- symlinks at all, before a checkout: libgit2 writes a tracked `keys/a.txt` through an agent's
  `keys -> /somewhere/outside`.

`clear_hazards` removes all of these (symlinks only when asked: they are legitimate content to commit,
but not when a checkout follows) without ever following a symlink: the walk opens each folder relative
to its parent's descriptor with `O_NOFOLLOW`, and removal is `unlink`/`rmdir` on names in that folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

GIT_METAFILES = frozenset({".gitattributes", ".gitignore", ".gitmodules", ".mailmap"})
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class TreeScan:
    """What `clear_hazards` removed (paths relative to the root, why) and the regular files it saw that
    are larger than the bound it was given (`{path: bytes}`)."""

    removed: list[tuple[str, str]] = field(default_factory=list)
    oversized: dict[str, int] = field(default_factory=dict)
    symlinks_removed: int = 0

    def notes(self) -> list[str]:
        """One line per removed entry, for a handoff."""
        return [f"{path}: {why}" for path, why in self.removed]


def _kind(entry: os.DirEntry) -> str:
    """"link", "dir", "file" or "special", never following a symlink (from the directory listing itself
    where the filesystem gives the type)."""
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "special"


def _remove(parent: int, name: str, is_dir: bool) -> None:
    if is_dir:
        shutil.rmtree(name, dir_fd=parent)  # the descriptor-based rmtree: it never follows a symlink
    else:
        os.unlink(name, dir_fd=parent)


def clear_hazards(root: Path, *, symlinks: bool = False, size_bound: int | None = None,
                  keep_top_git: bool = True) -> TreeScan:
    """Remove, below `root`, every nested repository (`.git` at any depth but the top), FIFO, socket and
    device, every symlinked git metafile, and with `symlinks` every symlink; never follows one.

    `size_bound`: regular files larger than it are listed in `oversized` (not removed). The top's own
    `.git` (Cadre's pointer to the cache) is left alone with `keep_top_git`."""
    scan = TreeScan()
    top = os.open(root, _DIRECTORY_FLAGS)
    stack: list[tuple[int, str]] = [(top, "")]
    try:
        while stack:
            fd, prefix = stack.pop()
            try:
                with os.scandir(fd) as entries:  # the kind of each entry comes with it: no stat per file
                    listing = [(e.name, _kind(e), e) for e in entries]
                for name, kind, entry in listing:
                    path = f"{prefix}{name}"
                    if name == ".git" and (prefix or not keep_top_git):
                        _remove(fd, name, kind == "dir")
                        scan.removed.append((path, "nested repository removed"))
                    elif kind == "link":
                        if symlinks or name in GIT_METAFILES:
                            os.unlink(name, dir_fd=fd)
                            scan.symlinks_removed += 1
                            if name in GIT_METAFILES:
                                scan.removed.append((path, "symlinked git metafile removed"))
                    elif kind == "dir":
                        if not (name == ".git" and not prefix):
                            stack.append((os.open(name, _DIRECTORY_FLAGS, dir_fd=fd), f"{path}/"))
                    elif kind == "file":
                        if size_bound is not None and (size := entry.stat(follow_symlinks=False).st_size) > size_bound:
                            scan.oversized[path] = size
                    else:
                        os.unlink(name, dir_fd=fd)
                        scan.removed.append((path, "special file (FIFO, socket or device) removed"))
            finally:
                os.close(fd)
    finally:
        for fd, _prefix in stack:
            os.close(fd)
    return scan
