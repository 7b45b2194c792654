"""Enqueueing Cadre's tasks by name (the task code lives in planners/, workers/ and judge/).

Messages carry ids only; `argsrepr` adds a readable label (run, cycle, item and title) that
Flower shows in its task list. The Celery app is imported on first use, so commands that only
read state (`cadre status`) start fast.
"""

from __future__ import annotations

from orchestrator.queues.names import EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE
from orchestrator.state.models import PlannerNode, WorkItem

LABEL_CHARS = 200


def _send(name: str, args: list, label: str) -> None:
    from orchestrator.queues.app import app

    app.send_task(name, args=args, argsrepr=label[:LABEL_CHARS], kwargsrepr="")


def dispatch_planner(node: PlannerNode) -> None:
    """Queue a planner node (a first round or a wake-up) on `plan`."""
    area = node.area or "root planner"
    _send(PLAN_NODE, [node.id], f"{node.run_id} · cycle {node.cycle} · {node.id} · {area} (round {node.round})")


def dispatch_work_item(item: WorkItem) -> None:
    """Queue a work item on `work`."""
    _send(EXECUTE_WORK_ITEM, [item.id], f"{item.run_id} · cycle {item.cycle} · {item.id} · {item.title}")


def dispatch_judge(run_id: str, cycle: int) -> None:
    """Queue the judging of a cycle on `judge`."""
    _send(JUDGE_CYCLE, [run_id, cycle], f"{run_id} · cycle {cycle} · judge")
