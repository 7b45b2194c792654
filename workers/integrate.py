"""Landing a worker's commit on the target branch: fetch, rebase, push, retry with jittered backoff.

If the commit cannot land (an unresolved conflict, the lease lost, retries spent), it is pushed to
a rescue branch instead: nothing a worker committed is ever lost. Each result carries the wall time
of its steps (`LandingResult.steps`, seconds by step name), measured where they run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.git.cache import BareCache
from orchestrator.git.objects import has_commit, head_commit, stand_on
from orchestrator.git.repo import abort_rebase, head_sha, push, rebase_onto
from orchestrator.git.trailers import ITEM_TRAILER, item_trailers, landed_items, safe_id

log = logging.getLogger(__name__)
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 5.0
CONFLICT_TURNS = 2
__all__ = ["ITEM_TRAILER", "item_trailers", "landed_commit", "land", "land_via_queue", "rescue", "timed"]

ConflictResolver = Callable[[list[str]], bool]
"""Gets the conflicting paths of a stopped rebase; returns True once the rebase is complete."""


@dataclass
class LandingResult:
    """Where the commit ended up: on the branch (`landed`) or on `rescue_branch`."""

    landed: bool
    commit: str
    retries: int = 0
    rescue_branch: str | None = None
    conflicted_paths: list[str] = field(default_factory=list)
    reason: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    stale: bool = False  # refused because the attempt no longer holds its lease: the item needs a new attempt


@contextmanager
def timed(steps: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall time of the block to `steps[step]` (seconds)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        steps[step] = steps.get(step, 0.0) + time.perf_counter() - began


def rescue_branch_name(item_id: str, attempt: int) -> str:
    """`cadre/rescue/<item>/<attempt>`: where an attempt's commits go when they cannot land."""
    return f"cadre/rescue/{safe_id(item_id, 'item id')}/{int(attempt)}"


def landed_commit(path: Path, rev: str, item_id: str) -> str | None:
    """The commit reachable from `rev` whose trailer block names the item (it has landed), or None."""
    return landed_items(path, rev).get(item_id)


def backoff_seconds(retry: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**retry)]."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** retry))


def rescue(worktree: Path, cache: BareCache, item_id: str, attempt: int, reason: str,
           conflicted: list[str] | None = None, retries: int = 0, steps: dict[str, float] | None = None,
           stale: bool = False) -> LandingResult:
    """Push the worktree's HEAD to the attempt's rescue branch (forced: the branch is the attempt's own)."""
    branch = rescue_branch_name(item_id, attempt)
    steps = {} if steps is None else steps
    with timed(steps, "rescue push"):
        result = push(worktree, cache.url, f"+HEAD:refs/heads/{branch}")
    if not result.ok:
        raise RuntimeError(f"could not push rescue branch {branch}: {result.message}")
    log.warning("item %s attempt %s rescued to %s: %s", item_id, attempt, branch, reason)
    return LandingResult(landed=False, commit=head_sha(worktree), retries=retries, rescue_branch=branch,
                         conflicted_paths=conflicted or [], reason=reason, steps=steps, stale=stale)


def land(worktree: Path, cache: BareCache, branch: str, item_id: str, attempt: int, max_attempts: int,
         still_holds_lease: Callable[[], bool], resolve_conflicts: ConflictResolver | None = None) -> LandingResult:
    """Rebase the worktree's commit onto the branch tip and push it, retrying on non-fast-forward.

    A conflict gets up to CONFLICT_TURNS resolution turns. Before each push the lease is checked
    (fencing: a stale attempt never pushes to the branch) and the branch is searched for this
    item's trailer (the same change never lands twice).
    """
    upstream = f"refs/remotes/origin/{branch}"
    conflict_turns, steps = 0, {}
    for retry in range(max_attempts):
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
                return rescue(worktree, cache, item_id, attempt, "rebase conflict not resolved", conflicted, retry,
                              steps)
        if not still_holds_lease():
            return rescue(worktree, cache, item_id, attempt, "lease lost before push (stale attempt)", retries=retry,
                          steps=steps, stale=True)
        landed_before = landed_commit(worktree, upstream, item_id)
        if landed_before is not None:
            return rescue(worktree, cache, item_id, attempt, f"item already landed as {landed_before[:12]}",
                          retries=retry, steps=steps)
        with timed(steps, "push"):
            outcome = push(worktree, cache.url, f"HEAD:refs/heads/{branch}")
        if outcome.ok:
            return LandingResult(landed=True, commit=head_sha(worktree), retries=retry,
                                 conflicted_paths=conflicted, steps=steps)
        if not outcome.rejected:
            raise RuntimeError(f"push to {branch} failed: {outcome.message}")
        delay = backoff_seconds(retry)
        log.info("item %s: push rejected (%s), retry %s in %.2f s", item_id, outcome.message, retry + 1, delay)
        with timed(steps, "backoff"):
            time.sleep(delay)
    return rescue(worktree, cache, item_id, attempt, f"push still rejected after {max_attempts} tries",
                  retries=max_attempts, steps=steps)


def land_via_queue(store, worktree: Path, cache: BareCache, branch: str, item_id: str, attempt: int,
                   push_interval: float, still_holds_lease: Callable[[], bool],
                   resolve_conflicts: ConflictResolver | None = None) -> LandingResult:
    """Queue mode: hand the commit to the branch's lander; on a conflict answer, rebase onto the new
    tip, resolve with the agent (bounded) and resubmit. Unlandable work goes to the rescue branch.

    Once landed, the worktree stands on the landed commit (the lander replayed ours as a new one, so
    our own copy never looks unlanded); it is fetched first only when this host's cache lacks it (the
    lander ran elsewhere)."""
    from workers.landing_queue import submit

    upstream = f"refs/remotes/origin/{branch}"
    steps: dict[str, float] = {}
    for turn in range(CONFLICT_TURNS + 1):
        if not still_holds_lease():
            return rescue(worktree, cache, item_id, attempt, "lease lost before landing (stale attempt)", steps=steps,
                          stale=True)
        answer = submit(store, cache, worktree, branch, item_id, attempt, head_commit(worktree), push_interval,
                        steps=steps)
        if answer.status == "landed":
            if not has_commit(cache.path, answer.commit):
                with timed(steps, "fetch after landing"):
                    cache.fetch()
            with timed(steps, "stand on the landed commit"):
                stand_on(worktree, answer.commit)
            return LandingResult(landed=True, commit=answer.commit, retries=turn, steps=steps)
        if answer.status != "conflict" or turn == CONFLICT_TURNS:
            return rescue(worktree, cache, item_id, attempt, f"lander answered {answer.status}",
                          answer.conflicted_paths, turn, steps, stale=answer.status == "stale")
        with timed(steps, "rebase after a conflict"):
            cache.fetch()
            conflicted = rebase_onto(worktree, upstream)
        if conflicted and not (resolve_conflicts is not None and resolve_conflicts(conflicted)):
            abort_rebase(worktree)
            return rescue(worktree, cache, item_id, attempt, "rebase conflict not resolved", conflicted, turn, steps)
    raise AssertionError("unreachable")
