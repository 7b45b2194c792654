"""Test helpers: git with a fixed identity and bare remotes (the services live in orchestrator.local.processes)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestrator.local.processes import REDIS_HINT, CadreProcess, RedisServer, free_port  # noqa: F401


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    # safe.directory: some tests' repositories belong to the plain user their Cadre runs as (plain_user.py)
    return subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_remote(root: Path, files: dict[str, str], branch: str = "main") -> Path:
    """A bare repository with one commit on `branch` holding `files`; returns its path (the remote URL)."""
    remote = root / "remote.git"
    git("init", "--bare", "-b", branch, str(remote))
    seed = root / "seed"
    git("init", "-b", branch, str(seed))
    for name, content in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(content)
    git("add", "-A", cwd=seed)
    git("commit", "-m", "initial commit", cwd=seed)
    git("push", str(remote), f"{branch}:{branch}", cwd=seed)
    return remote
