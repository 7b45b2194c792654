"""Direct landing (`CADRE_INTEGRATION=direct`): the worker itself fetches, rebases and pushes, retrying with
jittered backoff when the branch moved; what cannot land goes to its rescue branch."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.git.cache import BareCache
from orchestrator.git.repo import abort_rebase, head_sha, push, rebase_onto
from orchestrator.landing.outcomes import LandingOutcome, LandingResult, PushFailed, timed
from orchestrator.landing.protocol import CONFLICT_TURNS, ConflictResolver
from orchestrator.landing.rescue import rescue
from orchestrator.landing.trailers import landed_commit

log = logging.getLogger(__name__)
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 5.0


def backoff_seconds(retry: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**retry)]."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** retry))


@dataclass(frozen=True)
class DirectLanding:
    """Fetch → rebase → push, at most `push_attempts` times."""

    push_attempts: int

    def land(self, worktree: Path, cache: BareCache, branch: str, item_id: str, attempt: int,
             still_holds_lease: Callable[[], bool], resolve_conflicts: ConflictResolver | None = None) -> LandingResult:
        """Rebase the worktree's commit onto the branch tip and push it, retrying on non-fast-forward.

        A conflict gets up to CONFLICT_TURNS resolution turns. Before each push the lease is checked
        (fencing: a stale attempt never pushes to the branch) and the branch is searched for this
        item's trailer (the same change never lands twice).
        """
        upstream = f"refs/remotes/origin/{branch}"
        conflict_turns, steps = 0, {}
        for retry in range(self.push_attempts):
            with timed(steps, "fetch"):
                cache.fetch()
            with timed(steps, "rebase"):
                conflicted = rebase_onto(worktree, upstream)
            if conflicted:
                conflict_turns += 1
                resolved = (conflict_turns <= CONFLICT_TURNS and resolve_conflicts is not None
                            and resolve_conflicts(conflicted))
                if not resolved:
                    abort_rebase(worktree)
                    return rescue(worktree, cache, item_id, attempt, "rebase conflict not resolved", conflicted,
                                  retry, steps)
            if not still_holds_lease():
                return rescue(worktree, cache, item_id, attempt, "lease lost before push (stale attempt)",
                              retries=retry, steps=steps, stale=True)
            landed_before = landed_commit(worktree, upstream, item_id)
            if landed_before is not None:
                return rescue(worktree, cache, item_id, attempt, f"item already landed as {landed_before[:12]}",
                              retries=retry, steps=steps)
            with timed(steps, "push"):
                outcome = push(worktree, cache.url, f"HEAD:refs/heads/{branch}")
            if outcome.ok:
                return LandingResult(LandingOutcome.LANDED, head_sha(worktree), retries=retry,
                                     conflicted_paths=conflicted, steps=steps)
            if not outcome.rejected:
                raise PushFailed(f"push to {branch} failed: {outcome.message}")
            delay = backoff_seconds(retry)
            log.info("item %s: push rejected (%s), retry %s in %.2f s", item_id, outcome.message, retry + 1, delay)
            with timed(steps, "backoff"):
                time.sleep(delay)
        return rescue(worktree, cache, item_id, attempt, f"push still rejected after {self.push_attempts} tries",
                      retries=self.push_attempts, steps=steps)
