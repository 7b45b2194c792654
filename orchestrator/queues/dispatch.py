"""Enqueueing Cadre's tasks by name (the task code lives in planners/, workers/ and judge/).

The Celery app is imported on first use, so commands that only read state (`cadre status`) start fast.
"""

from __future__ import annotations

from orchestrator.queues.names import EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE


def _send(name: str, args: list) -> None:
    from orchestrator.queues.app import app

    app.send_task(name, args=args)


def dispatch_planner(node_id: str) -> None:
    """Queue a planner node on `plan`."""
    _send(PLAN_NODE, [node_id])


def dispatch_work_item(item_id: str) -> None:
    """Queue a work item on `work`."""
    _send(EXECUTE_WORK_ITEM, [item_id])


def dispatch_judge(run_id: str, cycle: int) -> None:
    """Queue the judging of a cycle on `judge`."""
    _send(JUDGE_CYCLE, [run_id, cycle])
