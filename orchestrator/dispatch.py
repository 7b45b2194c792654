"""Enqueueing Cadre's tasks by name (the task code lives in planners/, workers/ and judge/)."""

from __future__ import annotations

from orchestrator.celery_app import EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE, app


def dispatch_planner(node_id: str) -> None:
    """Queue a planner node on `plan`."""
    app.send_task(PLAN_NODE, args=[node_id])


def dispatch_work_item(item_id: str) -> None:
    """Queue a work item on `work`."""
    app.send_task(EXECUTE_WORK_ITEM, args=[item_id])


def dispatch_judge(run_id: str, cycle: int) -> None:
    """Queue the judging of a cycle on `judge`."""
    app.send_task(JUDGE_CYCLE, args=[run_id, cycle])
