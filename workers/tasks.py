"""Celery tasks of the `work` queue: work items, and the branch checks and sweeps the tick asks for.

Their time limits come from the settings when the app is configured (`orchestrator.queues.app`)."""

from __future__ import annotations

from orchestrator.config.settings import get_settings
from orchestrator.flow.checks import check_moved_head
from orchestrator.queues.app import app
from orchestrator.queues.names import CHECK_BRANCH, EXECUTE_WORK_ITEM, SWEEP_PENDING_REFS
from orchestrator.recovery.sweeper import sweep
from orchestrator.state.store import get_store
from workers.execution import execute_work_item


@app.task(name=EXECUTE_WORK_ITEM, bind=True)
def execute_work_item_task(self, item_id: str) -> None:
    """Carry out one attempt of a work item (recorded as run by this Celery worker's hostname)."""
    execute_work_item(get_store(), get_settings(), item_id, celery_hostname=self.request.hostname or "")


@app.task(name=CHECK_BRANCH)
def check_branch_task(run_id: str) -> None:
    """Check a run's branch head if it moved (the tick's request)."""
    check_moved_head(get_store(), get_settings(), run_id)


@app.task(name=SWEEP_PENDING_REFS)
def sweep_pending_refs_task(run_id: str) -> None:
    """Delete a run's repository's leftover pending refs (the tick's request)."""
    sweep(get_store(), get_settings(), run_id)
