"""Work the tick asks for but never does itself: checking a moved branch head, sweeping pending refs."""

from __future__ import annotations

import logging

from orchestrator.config.settings import CadreSettings
from orchestrator.flow.checks import check_branch_head, last_checked_head
from orchestrator.flow.runs import repository_cache
from orchestrator.git.runner import GitError
from orchestrator.git.workspace import worktree_slot
from orchestrator.state.keys import Keys
from orchestrator.state.store import Store
from workers.landing_queue import sweep_pending_refs

log = logging.getLogger(__name__)


def check_moved_head(store: Store, settings: CadreSettings, run_id: str) -> None:
    """Run the run's check command on the branch head if it moved since the last check (one check of a
    run at a time: a second request meanwhile does nothing)."""
    run = store.runs.get(run_id)
    if not run.check_command or not store.redis.set(Keys.checking(run_id), 1, nx=True,
                                                    ex=settings.check_timeout_seconds + 60):
        return
    try:
        cache = repository_cache(store, settings, run)
        head = cache.head(run.branch)
        if head != last_checked_head(store, run.id):
            with worktree_slot(cache, "check", head) as worktree:
                check_branch_head(store, settings, run, run.cycle, worktree, "tick")
    except GitError as exc:
        log.warning("run %s: cannot check the branch head: %s", run.id, exc)
    finally:
        store.redis.delete(Keys.checking(run_id))


def sweep(store: Store, settings: CadreSettings, run_id: str) -> list[str]:
    """Delete the run's repository's pending refs that no running attempt waits for."""
    run = store.runs.get(run_id)
    deleted = sweep_pending_refs(store, repository_cache(store, settings, run))
    if deleted:
        store.events.emit(run.id, "pending_refs_swept", refs=len(deleted))
    return deleted
