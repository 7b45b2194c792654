"""Celery tasks of the `work` queue: work items, and the branch checks and sweeps the tick asks for."""

from __future__ import annotations

from orchestrator.config.settings import get_settings
from orchestrator.queues.app import app, time_limits
from orchestrator.queues.names import CHECK_BRANCH, EXECUTE_WORK_ITEM, SWEEP_PENDING_REFS
from orchestrator.state.store import get_store
from workers.execution import execute_work_item
from workers.maintenance import check_moved_head, sweep

MAINTENANCE_LIMIT_SECONDS = get_settings().check_timeout_seconds + 120


@app.task(name=EXECUTE_WORK_ITEM, bind=True, **time_limits(get_settings(), "worker"))
def execute_work_item_task(self, item_id: str) -> None:
    """Carry out one attempt of a work item (recorded as run by this Celery node)."""
    execute_work_item(get_store(), item_id, node=self.request.hostname or "")


@app.task(name=CHECK_BRANCH, time_limit=MAINTENANCE_LIMIT_SECONDS, soft_time_limit=MAINTENANCE_LIMIT_SECONDS - 30)
def check_branch_task(run_id: str) -> None:
    """Check a run's branch head if it moved (the tick's request)."""
    check_moved_head(get_store(), get_settings(), run_id)


@app.task(name=SWEEP_PENDING_REFS, time_limit=600, soft_time_limit=570)
def sweep_pending_refs_task(run_id: str) -> None:
    """Delete a run's repository's leftover pending refs (the tick's request)."""
    sweep(get_store(), get_settings(), run_id)
