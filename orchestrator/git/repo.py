"""Porcelain git for workers, planners and the judge: worktrees, commits, rebases, pushes, trailer scans.

Everything runs through `orchestrator.git.runner`; failures raise one-line `GitError`s.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.config.secrets import redact_url
from orchestrator.git.change_gate import ChangeVerdict, excluded, judge_change
from orchestrator.git.objects import (
    check_out_detached,
    commit_index,
    first_unreachable,
    resolve_commit,
    stage_worktree,
    unstage,
    valid_ref_name,
)
from orchestrator.git.runner import (
    NETWORK_TIMEOUT_S,
    GitError,
    PathArg,
    check_args,
    git_env,
    is_push_rejection,
    one_line,
    run_git,
)
from orchestrator.untrusted.tree import clear_hazards

logger = logging.getLogger(__name__)
DEFAULT_MAX_COMMIT_BYTES = 50_000_000

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


def remote_branch_head(url: str, branch: str) -> str:
    """Sha of `refs/heads/<branch>` at `url`, asked with `git ls-remote` (never prompts)."""
    check_args(url=url, branch=branch)
    ref = f"refs/heads/{branch}"
    out = run_git(None, "ls_remote", url, ref, env=git_env(network=True),
                kill_after_timeout=NETWORK_TIMEOUT_S, what=f"cannot reach repository {redact_url(url)}")
    shas = [line.split("\t")[0] for line in out.splitlines() if line.endswith(f"\t{ref}")]
    if not shas:
        raise GitError(f"branch {branch} not found in {redact_url(url)}")
    return shas[0]


def _git_dir(path: PathArg) -> Path:
    """The private git directory of a worktree (the target of its `.git` file), without running git."""
    dot_git = Path(path) / ".git"
    if not dot_git.is_file():
        return dot_git
    target = dot_git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
    return (Path(path) / target).resolve()


def common_git_dir(path: PathArg) -> Path:
    """The repository a worktree belongs to (for Cadre's slots: the host's bare cache), without running git."""
    private = _git_dir(path)
    return private.parent.parent if private.parent.name == "worktrees" else private


def unstage_onto_merge_base(path: PathArg, upstream: str) -> None:
    """Turn the worktree's own commits (those not in `upstream`) back into staged changes on their base,
    so that the next commit carries them and what is added to them as one change."""
    check_args(upstream=upstream)
    base = run_git(path, "merge_base", "HEAD", upstream, what=f"no common history with {upstream}").strip()
    run_git(path, "reset", "--soft", base)


def rebase_in_progress(path: PathArg) -> bool:
    """Whether a rebase is stopped in the worktree at `path`."""
    gd = _git_dir(path)
    return (gd / "rebase-merge").is_dir() or (gd / "rebase-apply").is_dir()


def unlanded_tip(path: PathArg) -> str | None:
    """Sha of the worktree's own commits that no remote-tracking ref contains, or None.

    During a stopped rebase the pre-rebase tip counts, so a half-done rebase hides nothing.
    """
    orig = _git_dir(path) / "rebase-merge" / "orig-head"
    tip = orig.read_text(encoding="utf-8").strip() if orig.is_file() else "HEAD"
    if first_unreachable(path, tip) is None:
        return None
    return rev_sha(path, tip)


def reset_worktree(path: PathArg, start_point: str) -> None:
    """Make the worktree exactly `start_point`: detached, no rebase/merge state, no stray files. What an agent
    left is removed without following a symlink, before anything is checked out."""
    check_args(start_point=start_point)
    (_git_dir(path) / "index.lock").unlink(missing_ok=True)  # left by a killed git; we own the slot
    if rebase_in_progress(path):
        clear_hazards(Path(path), symlinks=True)  # (check_out_detached below does this itself)
        run_git(path, "rebase", "--quit")
        run_git(path, "checkout", "--quiet", "--detach", "--force", start_point)
        run_git(path, "reset", "--quiet", "--hard", start_point)  # also drops MERGE_HEAD / CHERRY_PICK_HEAD
    else:  # the common case, in-process: one git process (the clean) instead of three
        check_out_detached(path, rev_sha(path, start_point))
    run_git(path, "clean", "-ffdxq")


def rev_sha(path: PathArg, rev: str) -> str:
    """Commit sha `rev` names in the repository or worktree at `path`; GitError if it names none."""
    check_args(revision=rev)
    sha = resolve_commit(path, rev)  # in-process: no git process for the most frequent question
    if sha is None:
        raise GitError(f"unknown revision {rev}: no such commit")
    return sha


def head_sha(path: PathArg) -> str:
    """Sha of HEAD in the repository or worktree at `path`."""
    return rev_sha(path, "HEAD")


def changed_paths(path: PathArg) -> list[str]:
    """Sorted paths that differ from HEAD: staged, unstaged and untracked (each file listed)."""
    out = run_git(path, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})


class CommittedWork(BaseModel):
    """What `commit_work` committed: `sha` (None: nothing changed), the `problems` that forbid landing it (the
    commit then holds only what was safe to keep, for a rescue branch), and what it left out and removed."""
    model_config = ConfigDict(frozen=True)
    sha: str | None
    problems: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def may_land(self) -> bool:
        return self.sha is not None and not self.problems

    def notes(self) -> str:
        """One paragraph for a handoff: why it may not land, and what was left out or removed."""
        lines = [*(f"refused: {p}" for p in self.problems), *(f"left out: {p}" for p in self.left_out),
                 *(f"removed: {r}" for r in self.removed)]
        return "\n".join(lines)


def stage_safely(path: PathArg, exclude: tuple[str, ...] = (),
                 max_bytes: int = DEFAULT_MAX_COMMIT_BYTES) -> tuple[ChangeVerdict, list[str], list[str]]:
    """Stage what an agent changed in the worktree, safely: nested repositories, special files and symlinked
    git metafiles removed first (never followed), files matching the `exclude` globs (at any depth) and files
    over `max_bytes` not staged, then what `change_gate` refuses unstaged again. Returns the gate's verdict
    on the full change, the paths left out, and the hazards removed."""
    scan = clear_hazards(Path(path), size_bound=max_bytes)
    left = stage_worktree(path, lambda p: excluded(p, exclude) or p in scan.oversized)
    verdict = judge_change(path, max_bytes)
    if verdict.unsafe_paths:
        unstage(path, list(verdict.unsafe_paths))
    problems = tuple(f"{p} is {scan.oversized[p]} bytes, more than the {max_bytes} a commit may add"
                     for p in left if p in scan.oversized)
    verdict = ChangeVerdict(problems + verdict.problems, verdict.unsafe_paths)
    left_out = [p for p in left if p in scan.oversized] + list(verdict.unsafe_paths)
    return verdict, left_out, scan.notes()


def commit_work(path: PathArg, message: str, author_name: str, author_email: str, exclude: tuple[str, ...] = (),
                max_bytes: int = DEFAULT_MAX_COMMIT_BYTES) -> CommittedWork:
    """Commit what an agent changed in the worktree (`stage_safely`) with `message` kept verbatim. The result
    says whether it may land; a refused change is still committed without its unsafe parts, for a rescue."""
    if not message.strip():
        raise GitError("commit message is empty")
    verdict, left_out, removed = stage_safely(path, exclude, max_bytes)
    sha = commit_index(path, message if message.endswith("\n") else message + "\n", author_name, author_email)
    if sha is not None:
        logger.info("committed %s in %s", sha[:12], path)
    return CommittedWork(sha=sha, problems=verdict.problems, left_out=tuple(left_out), removed=tuple(removed))


def commit_all(path: PathArg, message: str, author_name: str, author_email: str,
               exclude: tuple[str, ...] = ()) -> str | None:
    """`commit_work` for callers that only need the new sha (None when nothing changed)."""
    return commit_work(path, message, author_name, author_email, exclude).sha


def diff_stats(path: PathArg, base: str, head: str) -> DiffStats:
    """Files changed and lines added/removed between `base` and `head` (renames as delete + add)."""
    out = run_git(path, "diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", base, head, "--")
    rows = [record.split("\t", 2) for record in out.split("\0") if record]  # binary files count "-"
    return DiffStats(files=[row[2] for row in rows],
                     insertions=sum(int(row[0]) for row in rows if row[0].isdigit()),
                     deletions=sum(int(row[1]) for row in rows if row[1].isdigit()))


def _conflicts(path: PathArg) -> list[str]:
    """Sorted unresolved paths of a stopped rebase; [] when no rebase is stopped."""
    if not rebase_in_progress(path):
        return []
    return sorted(set(filter(None, run_git(path, "diff", "--name-only", "-z", "--diff-filter=U").split("\0"))))


def rebase_onto(path: PathArg, upstream: str, author_name: str | None = None,
                author_email: str | None = None) -> list[str]:
    """Rebase HEAD onto `upstream`: [] when done, else the conflicting paths (rebase left stopped).

    Authors are kept; the committer is the given identity, or HEAD's author.
    """
    check_args(upstream=upstream)
    if not (author_name and author_email):
        author_name, _, author_email = run_git(path, "log", "-1", "--format=%an%x00%ae").partition("\0")
    try:
        run_git(path, "rebase", "--quiet", "--no-gpg-sign", "--no-verify", "--no-autostash", upstream,
              env=git_env(author_name, author_email), what=f"rebase onto {upstream} failed")
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
        run_git(path, "rebase", "--continue", env=git_env(author_name, author_email) | {"GIT_EDITOR": "true"},
              what="rebase --continue failed")
        return []
    except GitError:
        if conflicts := _conflicts(path):
            return conflicts
        raise


def abort_rebase(path: PathArg) -> None:
    """Abort a stopped rebase, restoring the pre-rebase HEAD; a no-op when none is in progress."""
    if rebase_in_progress(path):
        run_git(path, "rebase", "--abort")


def push(path: PathArg, url: str, refspec: str, author_name: str | None = None,
         author_email: str | None = None) -> PushResult:
    """Push `refspec` (`HEAD:refs/heads/main`) to `url`: `rejected=True` if the remote moved on.

    Any other failure raises GitError."""
    check_args(url=url, refspec=refspec)
    destination = refspec.rpartition(":")[2]
    if not valid_ref_name(destination) or refspec.count(":") != 1:
        raise GitError(f"refusing to push to an invalid ref: {refspec[:80]!r}")
    status, out, err = run_git(path, "push", "--porcelain", "--no-verify", url, refspec,
                               env=git_env(author_name, author_email, network=True),
                               kill_after_timeout=NETWORK_TIMEOUT_S, with_extended_output=True,
                               with_exceptions=False, what=f"push to {redact_url(url)} failed")
    refs = [line.split("\t") for line in out.splitlines() if line.count("\t") == 2]
    summaries = [f"{fields[1].rpartition(':')[2]}: {fields[2]}" for fields in refs]
    if status == 0:
        logger.info("pushed %s to %s", refspec, redact_url(url))
        return PushResult(ok=True, rejected=False, message=summaries[0] if summaries else "pushed")
    refused = [s for fields, s in zip(refs, summaries) if fields[0] == "!"]
    if refused and all(is_push_rejection(s) for s in refused):
        logger.info("push of %s to %s rejected: %s", refspec, redact_url(url), refused[0])
        return PushResult(ok=False, rejected=True, message=refused[0])
    reason = refused[0] if refused else one_line(err, f"git exited with {status}")
    raise GitError(f"push to {redact_url(url)} failed: {reason}")


def log_subjects(path: PathArg, rev: str, max_count: int | None = None) -> list[str]:
    """Subjects of the commits reachable from `rev`, newest first (works on bare repos too)."""
    check_args(revision=rev)
    limit = [] if max_count is None else [f"--max-count={max_count}"]
    return run_git(path, "log", "--format=%s", *limit, rev, "--").splitlines()


def commits_between(path: PathArg, base: str, head: str) -> list[str]:
    """Shas reachable from `head` but not from `base`, oldest first."""
    check_args(base=base, head=head)
    return run_git(path, "rev_list", "--reverse", f"{base}..{head}", "--").split()


def files_at(path: PathArg, rev: str, folder: str) -> dict[str, str]:
    """`{path below folder: text}` of every file under `folder` in commit `rev` (read from the object store)."""
    check_args(revision=rev, folder=folder)
    names = run_git(path, "ls_tree", "-r", "-z", "--name-only", rev, "--", folder).split("\0")
    prefix = folder.rstrip("/") + "/"
    return {name.removeprefix(prefix): run_git(path, "cat_file", "-p", f"{rev}:{name}", strip_newline_in_stdout=False)
            for name in names if name.startswith(prefix)}


def stage_all(path: PathArg, max_bytes: int = DEFAULT_MAX_COMMIT_BYTES) -> ChangeVerdict:
    """Stage every change of a worktree safely (e.g. an agent's conflict resolution): see `stage_safely`."""
    return stage_safely(path, max_bytes=max_bytes)[0]
