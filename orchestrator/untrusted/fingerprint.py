"""A cheap fingerprint of a worktree an agent works in: does anything change between two of its steps?

The walk never follows a symlink (a symlink counts as itself), skips the top-level `.git`, and hashes each
entry's path, kind, size and modification time, not its content: a step that writes a file changes its
time, whatever it writes. Used to catch an agent that goes on without changing anything.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

MAX_ENTRIES = 200_000  # past this many entries the rest of the tree is not looked at


def worktree_fingerprint(root: Path) -> str:
    """A digest that changes whenever a file or folder of `root` is added, removed, resized or rewritten."""
    digest = hashlib.blake2b(digest_size=16)
    seen = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        if folder == str(root):
            dirs[:] = [d for d in dirs if d != ".git"]
            files = [f for f in files if f != ".git"]
        dirs.sort()
        for name in sorted(files) + dirs:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            relative = os.path.relpath(os.path.join(folder, name), root)
            digest.update(f"{relative}\0{stat.S_IFMT(info.st_mode)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode(
                errors="surrogateescape"))
            seen += 1
            if seen >= MAX_ENTRIES:
                return digest.hexdigest()
    return digest.hexdigest()
