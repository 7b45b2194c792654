"""The sweeper: pending refs left on a run's remote by answered requests whose delete failed, or by
attempts that died while submitting, are deleted (the tick asks for it at most every ten minutes)."""

from __future__ import annotations

from orchestrator.config.settings import CadreSettings
from orchestrator.flow.repository import repository_cache
from orchestrator.landing.lander import sweep_pending_refs
from orchestrator.state.store import Store


def sweep(store: Store, settings: CadreSettings, run_id: str) -> list[str]:
    """Delete the run's repository's pending refs that no running attempt waits for."""
    run = store.runs.get(run_id)
    deleted = sweep_pending_refs(store, repository_cache(store, settings, run))
    if deleted:
        store.events.emit(run.id, "pending_refs_swept", refs=len(deleted))
    return deleted
