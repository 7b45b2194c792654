"""Landing a worker's commit on the target branch: fetch, rebase, push, retry with jittered backoff.

If the commit cannot land (a rebase conflict, the lease lost, retries spent), it is pushed to a
rescue branch instead: nothing a worker committed is ever lost.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.git_repo import BareCache, abort_rebase, head_sha, push, rebase_onto

log = logging.getLogger(__name__)
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 5.0


@dataclass
class LandingResult:
    """Where the commit ended up: on the branch (`landed`) or on `rescue_branch`."""

    landed: bool
    commit: str
    retries: int = 0
    rescue_branch: str | None = None
    conflicted_paths: list[str] = field(default_factory=list)
    reason: str = ""


def rescue_branch_name(item_id: str, attempt: int) -> str:
    """`cadre/rescue/<item>/<attempt>`: where an attempt's commits go when they cannot land."""
    return f"cadre/rescue/{item_id}/{attempt}"


def backoff_seconds(retry: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**retry)]."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** retry))


def rescue(worktree: Path, cache: BareCache, item_id: str, attempt: int, reason: str,
           conflicted: list[str] | None = None, retries: int = 0) -> LandingResult:
    """Push the worktree's HEAD to the attempt's rescue branch (force: the branch is the attempt's own)."""
    branch = rescue_branch_name(item_id, attempt)
    result = push(worktree, cache.url, f"+HEAD:refs/heads/{branch}")
    if not result.ok:
        raise RuntimeError(f"could not push rescue branch {branch}: {result.message}")
    log.warning("item %s attempt %s rescued to %s: %s", item_id, attempt, branch, reason)
    return LandingResult(landed=False, commit=head_sha(worktree), retries=retries, rescue_branch=branch,
                         conflicted_paths=conflicted or [], reason=reason)


def land(worktree: Path, cache: BareCache, branch: str, item_id: str, attempt: int, max_attempts: int,
         still_holds_lease: Callable[[], bool]) -> LandingResult:
    """Rebase the worktree's commit onto the branch tip and push it, retrying on non-fast-forward.

    Before each push the lease is checked (fencing): a stale attempt never pushes to the branch.
    """
    upstream = f"refs/remotes/origin/{branch}"
    for retry in range(max_attempts):
        cache.fetch()
        conflicted = rebase_onto(worktree, upstream)
        if conflicted:
            abort_rebase(worktree)
            return rescue(worktree, cache, item_id, attempt, "rebase conflict", conflicted, retry)
        if not still_holds_lease():
            return rescue(worktree, cache, item_id, attempt, "lease lost before push", retries=retry)
        outcome = push(worktree, cache.url, f"HEAD:refs/heads/{branch}")
        if outcome.ok:
            return LandingResult(landed=True, commit=head_sha(worktree), retries=retry)
        if not outcome.rejected:
            raise RuntimeError(f"push to {branch} failed: {outcome.message}")
        delay = backoff_seconds(retry)
        log.info("item %s: push rejected (non-fast-forward), retry %s in %.2f s", item_id, retry + 1, delay)
        time.sleep(delay)
    return rescue(worktree, cache, item_id, attempt, f"push still rejected after {max_attempts} tries",
                  retries=max_attempts)
