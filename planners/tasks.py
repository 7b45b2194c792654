"""Celery task of the `plan` queue."""

from __future__ import annotations

from orchestrator.config.settings import get_settings
from orchestrator.queues.app import app
from orchestrator.queues.names import PLAN_NODE
from orchestrator.state.store import get_store
from planners.planning import plan_node


@app.task(name=PLAN_NODE)
def plan_node_task(node_id: str) -> None:
    """Plan one node (root or sub-planner) of a cycle."""
    plan_node(get_store(), get_settings(), node_id)
