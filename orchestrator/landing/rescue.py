"""Where an attempt's commits go when they cannot land: the attempt's own rescue branch."""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.git.cache import BareCache
from orchestrator.git.names import safe_id
from orchestrator.git.repo import head_sha, push
from orchestrator.landing.outcomes import LandingOutcome, LandingResult, RescueFailed, timed

log = logging.getLogger(__name__)


def rescue_branch_name(item_id: str, attempt: int) -> str:
    """`cadre/rescue/<item>/<attempt>`: where an attempt's commits go when they cannot land."""
    return f"cadre/rescue/{safe_id(item_id, 'item id')}/{int(attempt)}"


def rescue(worktree: Path, cache: BareCache, item_id: str, attempt: int, reason: str,
           conflicted: list[str] | None = None, retries: int = 0, steps: dict[str, float] | None = None,
           stale: bool = False) -> LandingResult:
    """Push the worktree's HEAD to the attempt's rescue branch (forced: the branch is the attempt's own)."""
    branch = rescue_branch_name(item_id, attempt)
    steps = {} if steps is None else steps
    with timed(steps, "rescue push"):
        result = push(worktree, cache.url, f"+HEAD:refs/heads/{branch}")
    if not result.ok:
        raise RescueFailed(f"could not push rescue branch {branch}: {result.message}")
    log.warning("item %s attempt %s rescued to %s: %s", item_id, attempt, branch, reason)
    return LandingResult(LandingOutcome.STALE if stale else LandingOutcome.RESCUED, head_sha(worktree),
                         retries=retries, rescue_branch=branch, conflicted_paths=conflicted or [], reason=reason,
                         steps=steps)
