"""Celery task of the `work` queue."""

from __future__ import annotations

from orchestrator.config.settings import get_settings
from orchestrator.queues.app import app, time_limits
from orchestrator.queues.names import EXECUTE_WORK_ITEM
from orchestrator.state.store import get_store
from workers.execution import execute_work_item


@app.task(name=EXECUTE_WORK_ITEM, bind=True, **time_limits(get_settings(), "worker"))
def execute_work_item_task(self, item_id: str) -> None:
    """Carry out one attempt of a work item (recorded as run by this Celery node)."""
    execute_work_item(get_store(), item_id, node=self.request.hostname or "")
