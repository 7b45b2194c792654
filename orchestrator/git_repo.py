"""Git plumbing for Cadre, the only module importing GitPython. Failures raise one-line `GitError`s.

Identity goes per command through its environment; no global git config or process state is changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import git
from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)

PathArg = str | os.PathLike[str]
ORIGIN_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
NETWORK_TIMEOUT_S = 600.0  # ls-remote and push
FETCH_TIMEOUT_S = 1800.0
_GENERIC_LINES = ("could not read from remote repository", "failed to push some refs")
# Rejections that mean "the branch moved (or is moving) under you": fetch, rebase and try again.
# A concurrent push holding the remote's ref lock shows up as "failed to update ref" / "cannot lock ref".
_REJECT_REASONS = ("non-fast-forward", "fetch first", "stale info", "failed to update ref", "cannot lock ref",
                   "failed to lock")


class GitError(RuntimeError):
    """A git operation failed; `str(error)` is a single line fit for a report."""


class DiffStats(BaseModel):
    """Line counts of `git diff --numstat base head` (binary files count as 0 lines)."""
    model_config = ConfigDict(frozen=True)
    files: list[str]
    insertions: int
    deletions: int


class PushResult(BaseModel):
    """Outcome of a push. `rejected` means the remote moved on (non-fast-forward and the like)."""
    model_config = ConfigDict(frozen=True)
    ok: bool
    rejected: bool
    message: str


def _redact(url: str) -> str:
    """Return `url` with any password in its user-info replaced by `***`."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url, flags=re.I)


def _one_line(text: str, fallback: str) -> str:
    """The most telling line of git output: the first non-generic `fatal:`, else `error:`, line (the root
    cause comes first; "Could not read from remote repository." is generic), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tagged = [ln.partition(":") for ln in lines if ln.lower().startswith(("fatal:", "error:"))]
    specific = [(kind.lower() != "fatal", msg.strip()) for kind, _, msg in tagged
                if not msg.strip().lower().startswith(_GENERIC_LINES)]
    if specific:
        return min(specific, key=lambda item: item[0])[1]
    return tagged[-1][2].strip() if tagged else (lines[-1] if lines else fallback)


def _reason(exc: git.CommandError) -> str:
    """One-line reason of a failed command, from its stdout then stderr (stderr wins)."""
    text = "\n".join(re.sub(r"^\s*std(?:out|err): '(.*)'$", r"\1", part or "", flags=re.S)
                     for part in (exc.stdout, exc.stderr))
    return _one_line(text, f"git exited with {exc.status}")


def _env(name: str | None = None, email: str | None = None, *, network: bool = False) -> dict[str, str]:
    """Per-call environment: author and committer identity, and no prompts for network commands."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"} if network else {}
    if name and email:
        env.update(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name,
                   GIT_COMMITTER_EMAIL=email)
    return env


def _call(cwd: PathArg | None, command: str, *args: str, git_dir: PathArg | None = None,
          what: str = "", **kw: Any) -> str:
    """`git.Git(cwd).<command>(*args, **kw)`'s stdout, or GitError("<what>: <one-line reason>")."""
    runner = git.Git(None if cwd is None else os.fspath(cwd))
    if git_dir is not None:
        runner.set_persistent_git_options(git_dir=os.fspath(git_dir))
    try:
        return getattr(runner, command)(*args, **kw)
    except git.CommandError as exc:
        label = what or f"git {command.replace('_', '-')} failed"
        raise GitError(f"{label}: {_reason(exc)}") from None


def _check(**values: str) -> None:
    """Refuse empty arguments and arguments git would parse as an option."""
    for what, value in values.items():
        if not value or value.startswith("-"):
            raise GitError(f"invalid {what}: {value!r}")


def remote_branch_head(url: str, branch: str) -> str:
    """Sha of `refs/heads/<branch>` at `url`, asked with `git ls-remote` (never prompts)."""
    _check(url=url, branch=branch)
    ref = f"refs/heads/{branch}"
    out = _call(None, "ls_remote", url, ref, env=_env(network=True),
                kill_after_timeout=NETWORK_TIMEOUT_S, what=f"cannot reach repository {_redact(url)}")
    shas = [line.split("\t")[0] for line in out.splitlines() if line.endswith(f"\t{ref}")]
    if not shas:
        raise GitError(f"branch {branch} not found in {_redact(url)}")
    return shas[0]


class BareCache:
    """One bare mirror of a remote per host, shared by every worker process of that host."""

    def __init__(self, root: Path, url: str) -> None:
        """Describe the cache of `url` under `root`; `name` is the url digest. Touches no disk."""
        _check(url=url)
        self.root, self.url = Path(root), url
        self.name = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
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
            return (self._path / "HEAD").is_file() and _call(
                self._path, "config", "--get", "remote.origin.url", git_dir=self._path) == self.url
        except GitError:
            return False

    def ensure(self) -> None:
        """Make sure the bare cache exists with remote `origin`; idempotent and safe across processes."""
        if self._initialised():
            return
        with self.lock():
            if self._initialised():
                return
            logger.info("creating bare cache %s for %s", self._path, _redact(self.url))
            self._path.mkdir(parents=True, exist_ok=True)
            _call(self._path, "init", "--bare", "--quiet", os.fspath(self._path))
            for key, value in (("remote.origin.fetch", ORIGIN_REFSPEC), ("remote.origin.url", self.url)):
                _call(self._path, "config", "--replace-all", key, value, git_dir=self._path)

    def fetch(self) -> None:
        """`git fetch --prune origin` (branches only), serialized across the host's processes."""
        with self.lock():
            logger.debug("fetching %s into %s", _redact(self.url), self._path)
            _call(self._path, "fetch", "--prune", "--no-tags", "--quiet", "origin", git_dir=self._path,
                  env=_env(network=True), kill_after_timeout=FETCH_TIMEOUT_S,
                  what=f"cannot fetch {_redact(self.url)}")

    def head(self, branch: str) -> str:
        """Sha of `refs/remotes/origin/<branch>` as last fetched; GitError if the cache lacks it."""
        try:
            return rev_sha(self._path, f"refs/remotes/origin/{branch}")
        except GitError:
            raise GitError(f"branch {branch} not found in cache of {_redact(self.url)}") from None

    def owns_worktree(self, path: PathArg) -> bool:
        """Whether `path` is the top level of a working worktree registered in this cache."""
        path = Path(path)
        try:  # a directory without a `.git` file would make git look at the parent directories
            out = _call(path, "rev_parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel") \
                if (path / ".git").is_file() else ""
        except GitError:
            return False
        return [Path(line).resolve() for line in out.splitlines()] == [self._path.resolve(), path.resolve()]

    def add_worktree(self, path: PathArg, start_point: str) -> None:
        """Add `path` (absent) as a worktree, clean, detached at `start_point`; locks only prune + add."""
        _check(start_point=start_point)
        with self.lock():
            _call(self._path, "worktree", "prune", git_dir=self._path)
            _call(self._path, "worktree", "add", "--quiet", "--detach", "--no-checkout", os.fspath(path),
                  start_point, git_dir=self._path, what=f"cannot add worktree {path}")
        logger.info("added worktree %s at %s", path, start_point)
        reset_worktree(path, start_point)


def _git_dir(path: PathArg) -> Path:
    """The private git directory of a worktree (the target of its `.git` file), without running git."""
    dot_git = Path(path) / ".git"
    if not dot_git.is_file():
        return dot_git
    target = dot_git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
    return (Path(path) / target).resolve()


def rebase_in_progress(path: PathArg) -> bool:
    """Whether a rebase is stopped in the worktree at `path`."""
    gd = _git_dir(path)
    return (gd / "rebase-merge").is_dir() or (gd / "rebase-apply").is_dir()


def unlanded_tip(path: PathArg) -> tuple[str, str] | None:
    """(sha, message) of the worktree's own commits that no remote-tracking ref contains, or None.

    During a stopped rebase the pre-rebase tip counts, so a half-done rebase hides nothing.
    """
    orig = _git_dir(path) / "rebase-merge" / "orig-head"
    tip = orig.read_text(encoding="utf-8").strip() if orig.is_file() else "HEAD"
    if not _call(path, "rev_list", "--max-count=1", tip, "--not", "--remotes", "--"):
        return None
    sha = _call(path, "rev_parse", tip)
    return sha, _call(path, "log", "-1", "--format=%B", sha)


def reset_worktree(path: PathArg, start_point: str) -> None:
    """Make the worktree exactly `start_point`: detached, no rebase/merge state, no stray files."""
    _check(start_point=start_point)
    (_git_dir(path) / "index.lock").unlink(missing_ok=True)  # left by a killed git; we own the slot
    if rebase_in_progress(path):
        _call(path, "rebase", "--quit")
    _call(path, "checkout", "--quiet", "--detach", "--force", start_point)
    _call(path, "reset", "--quiet", "--hard", start_point)  # also drops MERGE_HEAD / CHERRY_PICK_HEAD
    _call(path, "clean", "-ffdxq")


def rev_sha(path: PathArg, rev: str) -> str:
    """Commit sha `rev` names in the repository or worktree at `path`; GitError if it names none."""
    _check(revision=rev)
    return _call(path, "rev_parse", "--verify", f"{rev}^{{commit}}", what=f"unknown revision {rev}").strip()


def head_sha(path: PathArg) -> str:
    """Sha of HEAD in the repository or worktree at `path`."""
    return rev_sha(path, "HEAD")


def changed_paths(path: PathArg) -> list[str]:
    """Sorted paths that differ from HEAD: staged, unstaged and untracked (each file listed)."""
    out = _call(path, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})


def commit_all(path: PathArg, message: str, author_name: str, author_email: str) -> str | None:
    """Stage everything and commit it with `message` kept verbatim; None when nothing changed."""
    if not message.strip():
        raise GitError("commit message is empty")
    _call(path, "add", "-A")
    if not _call(path, "diff", "--cached", "--name-only", "-z"):
        return None
    with tempfile.TemporaryFile() as stream:  # `-F -` keeps trailers and blank lines verbatim
        stream.write((message if message.endswith("\n") else message + "\n").encode("utf-8"))
        stream.seek(0)
        _call(path, "commit", "--quiet", "--no-verify", "--no-gpg-sign", "--cleanup=verbatim", "-F", "-",
              istream=stream, env=_env(author_name, author_email), what="commit failed")
    sha = head_sha(path)
    logger.info("committed %s in %s", sha[:12], path)
    return sha


def diff_stats(path: PathArg, base: str, head: str) -> DiffStats:
    """Files changed and lines added/removed between `base` and `head` (renames as delete + add)."""
    out = _call(path, "diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", base, head, "--")
    rows = [record.split("\t", 2) for record in out.split("\0") if record]  # binary files count "-"
    return DiffStats(files=[row[2] for row in rows],
                     insertions=sum(int(row[0]) for row in rows if row[0].isdigit()),
                     deletions=sum(int(row[1]) for row in rows if row[1].isdigit()))


def _conflicts(path: PathArg) -> list[str]:
    """Sorted unresolved paths of a stopped rebase; [] when no rebase is stopped."""
    if not rebase_in_progress(path):
        return []
    return sorted(set(filter(None, _call(path, "diff", "--name-only", "-z", "--diff-filter=U").split("\0"))))


def rebase_onto(path: PathArg, upstream: str, author_name: str | None = None,
                author_email: str | None = None) -> list[str]:
    """Rebase HEAD onto `upstream`: [] when done, else the conflicting paths (rebase left stopped).

    Authors are kept; the committer is the given identity, or HEAD's author.
    """
    _check(upstream=upstream)
    if not (author_name and author_email):
        author_name, _, author_email = _call(path, "log", "-1", "--format=%an%x00%ae").partition("\0")
    try:
        _call(path, "rebase", "--quiet", "--no-gpg-sign", "--no-verify", "--no-autostash", upstream,
              env=_env(author_name, author_email), what=f"rebase onto {upstream} failed")
        return []
    except GitError:
        if conflicts := _conflicts(path):
            logger.info("rebase of %s onto %s stopped on %d conflict(s)", path, upstream, len(conflicts))
            return conflicts
        if rebase_in_progress(path):
            abort_rebase(path)
        raise


def continue_rebase(path: PathArg, author_name: str, author_email: str) -> list[str]:
    """Continue a stopped rebase after `git add` of resolutions: [] when done, else paths in conflict."""
    if not rebase_in_progress(path):
        raise GitError(f"no rebase in progress in {path}")
    try:
        _call(path, "rebase", "--continue", env=_env(author_name, author_email) | {"GIT_EDITOR": "true"},
              what="rebase --continue failed")
        return []
    except GitError:
        if conflicts := _conflicts(path):
            return conflicts
        raise


def abort_rebase(path: PathArg) -> None:
    """Abort a stopped rebase, restoring the pre-rebase HEAD; a no-op when none is in progress."""
    if rebase_in_progress(path):
        _call(path, "rebase", "--abort")


def push(path: PathArg, url: str, refspec: str, author_name: str | None = None,
         author_email: str | None = None) -> PushResult:
    """Push `refspec` (`HEAD:refs/heads/main`) to `url`: `rejected=True` if the remote moved on.

    Any other failure raises GitError."""
    _check(url=url, refspec=refspec)
    try:
        status, out, err = git.Git(os.fspath(path)).push(
            "--porcelain", "--no-verify", url, refspec, env=_env(author_name, author_email, network=True),
            kill_after_timeout=NETWORK_TIMEOUT_S, with_extended_output=True, with_exceptions=False)
    except git.CommandError as exc:  # e.g. a timeout, or a missing directory
        raise GitError(f"push to {_redact(url)} failed: {_reason(exc)}") from None
    refs = [line.split("\t") for line in out.splitlines() if line.count("\t") == 2]
    summaries = [f"{fields[1].rpartition(':')[2]}: {fields[2]}" for fields in refs]
    if status == 0:
        logger.info("pushed %s to %s", refspec, _redact(url))
        return PushResult(ok=True, rejected=False, message=summaries[0] if summaries else "pushed")
    refused = [s for fields, s in zip(refs, summaries) if fields[0] == "!"]
    if refused and all(any(reason in s for reason in _REJECT_REASONS) for s in refused):
        logger.info("push of %s to %s rejected: %s", refspec, _redact(url), refused[0])
        return PushResult(ok=False, rejected=True, message=refused[0])
    reason = refused[0] if refused else _one_line(err, f"git exited with {status}")
    raise GitError(f"push to {_redact(url)} failed: {reason}")


def log_subjects(path: PathArg, rev: str, max_count: int | None = None) -> list[str]:
    """Subjects of the commits reachable from `rev`, newest first (works on bare repos too)."""
    _check(revision=rev)
    limit = [] if max_count is None else [f"--max-count={max_count}"]
    return _call(path, "log", "--format=%s", *limit, rev, "--").splitlines()


def commits_between(path: PathArg, base: str, head: str) -> list[str]:
    """Shas reachable from `head` but not from `base`, oldest first."""
    _check(base=base, head=head)
    return _call(path, "rev_list", "--reverse", f"{base}..{head}", "--").split()


def commit_with_trailer(path: PathArg, rev: str, trailer_line: str, max_count: int = 500) -> str | None:
    """The newest of the last `max_count` commits reachable from `rev` with `trailer_line` as a line, or None."""
    _check(revision=rev)
    wanted = trailer_line.strip()
    recent = _call(path, "rev_list", f"--max-count={max_count}", rev, "--").split()
    if not wanted or not recent:
        return None
    out = _call(path, "log", "--no-walk=unsorted", "--format=%H%x01%B%x00", "--fixed-strings", f"--grep={wanted}",
                *recent)
    for entry in out.split("\0"):
        sha, _, body = entry.strip().partition("\x01")
        if any(line.strip() == wanted for line in body.splitlines()):
            return sha
    return None


def branch_has_trailer(path: PathArg, rev: str, trailer_line: str, max_count: int = 500) -> bool:
    """Whether one of the last `max_count` commits reachable from `rev` has `trailer_line` as a line."""
    return commit_with_trailer(path, rev, trailer_line, max_count) is not None


def stage_all(path: PathArg) -> None:
    """`git add -A` in a worktree (e.g. after resolving conflicts)."""
    _call(path, "add", "-A")
