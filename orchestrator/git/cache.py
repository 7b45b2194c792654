"""The host's bare cache of a remote: one mirror per repository URL, shared by every process of a host."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.config.secrets import redact_url
from orchestrator.git.objects import config_value, init_bare
from orchestrator.git.repo import rev_sha
from orchestrator.git.runner import FETCH_TIMEOUT_S, GitError, PathArg, check_args, git_env, run_git

logger = logging.getLogger(__name__)
ORIGIN_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"


def _read_stamp(stamp: Path) -> int:
    """When the last completed fetch began (ns since the epoch), or 0."""
    try:
        return int(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0


class BareCache:
    """One bare mirror of a remote per host, shared by every worker process of that host."""

    def __init__(self, root: Path, url: str) -> None:
        """Describe the cache of `url` under `root`; `name` is the digest of the url without its credentials
        (rotating a token keeps the cache). Touches no disk."""
        check_args(url=url)
        self.root, self.url = Path(root), url
        self.public_url = redact_url(url)  # what is written on disk: never a password or token
        self.name = hashlib.sha256(self.public_url.encode("utf-8")).hexdigest()[:16]
        self._path = self.root / "caches" / f"{self.name}.git"

    @property
    def path(self) -> Path:
        """Directory of the bare repository."""
        return self._path

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the host-wide exclusive lock of this cache (flock on `<cache>.lock`); not reentrant."""
        lock_path = self._path.with_name(self._path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _initialised(self) -> bool:
        """Whether the cache exists and points at our url (the url is written last by `ensure`)."""
        try:
            return (self._path / "HEAD").is_file() and config_value(self._path, "remote.origin.url") == self.public_url
        except GitError:
            return False

    def ensure(self) -> None:
        """Make sure the bare cache exists with remote `origin`; idempotent and safe across processes."""
        if self._initialised():
            return
        with self.lock():
            if self._initialised():
                return
            logger.info("creating bare cache %s for %s", self._path, self.public_url)
            init_bare(self._path, {"remote.origin.fetch": ORIGIN_REFSPEC, "remote.origin.url": self.public_url})

    def fetch(self) -> None:
        """Fetch the remote's branches into `refs/remotes/origin/*` (pruned), serialized across the host's
        processes. The URL with its credentials goes on the command line only, never into a config file.

        Callers that queue up behind one fetch share the next: a fetch that began after this call began
        (recorded in `<cache>.fetched`) saw the remote as it is now or later, so this call returns at once."""
        asked = time.time_ns()
        stamp = self._path.with_name(self._path.name + ".fetched")
        with self.lock():
            if asked <= _read_stamp(stamp) <= time.time_ns():  # (a stamp from the future: the clock went back)
                return
            began = time.time_ns()
            logger.debug("fetching %s into %s", self.public_url, self._path)
            run_git(self._path, "fetch", "--prune", "--no-tags", "--quiet", self.url, ORIGIN_REFSPEC,
                    git_dir=self._path, env=git_env(network=True), kill_after_timeout=FETCH_TIMEOUT_S,
                    what=f"cannot fetch {self.public_url}")
            stamp.write_text(str(began), encoding="utf-8")

    def head(self, branch: str) -> str:
        """Sha of `refs/remotes/origin/<branch>` as last fetched; GitError if the cache lacks it."""
        try:
            return rev_sha(self._path, f"refs/remotes/origin/{branch}")
        except GitError:
            raise GitError(f"branch {branch} not found in cache of {redact_url(self.url)}") from None

    def owns_worktree(self, path: PathArg) -> bool:
        """Whether `path` is the top level of a working worktree registered in this cache."""
        path = Path(path)
        try:  # a directory without a `.git` file would make git look at the parent directories
            out = run_git(path, "rev_parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel") \
                if (path / ".git").is_file() else ""
        except GitError:
            return False
        return [Path(line).resolve() for line in out.splitlines()] == [self._path.resolve(), path.resolve()]

    def add_worktree(self, path: PathArg, start_point: str) -> None:
        """Add `path` (absent) as a worktree, clean, detached at `start_point`; locks only prune + add."""
        check_args(start_point=start_point)
        with self.lock():
            run_git(self._path, "worktree", "prune", git_dir=self._path)
            run_git(self._path, "worktree", "add", "--quiet", "--detach", "--no-checkout", os.fspath(path),
                  start_point, git_dir=self._path, what=f"cannot add worktree {path}")
        logger.info("added worktree %s at %s", path, start_point)
        # A new worktree has no stray state: one checkout makes it exact (a reused one gets `reset_worktree`).
        run_git(path, "checkout", "--quiet", "--detach", "--force", start_point, what=f"cannot check out {start_point}")
