"""Enqueueing Cadre's tasks by name (the task code lives in planners/, workers/ and judge/).

Messages carry ids only; `argsrepr` adds a readable label (run, cycle, item and title) that
Flower shows in its task list. The Celery app is imported on first use, so commands that only
read state (`cadre status`) start fast.
"""

from __future__ import annotations

from orchestrator.queues.names import CHECK_BRANCH, EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE, SWEEP_PENDING_REFS
from orchestrator.state.models import PlannerNode, WorkItem

LABEL_CHARS = 200
# Redis priorities: 0 is served first, 9 last (kombu keeps one list per band: 0, 3, 6, 9).
HIGHEST, LOWEST = 0, 9


def broker_priority(priority: int) -> int:
    """A work item's priority (0-9, higher runs first) as the broker's (0 first)."""
    return LOWEST - max(HIGHEST, min(LOWEST, priority))


def _send(name: str, args: list, label: str, priority: int = LOWEST) -> None:
    from orchestrator.queues.app import app

    app.send_task(name, args=args, argsrepr=label[:LABEL_CHARS], kwargsrepr="", priority=priority)


def dispatch_planner(node: PlannerNode) -> None:
    """Queue a planner node (a first round or a wake-up) on `plan`."""
    area = node.area or "root planner"
    _send(PLAN_NODE, [node.id], f"{node.run_id} · cycle {node.cycle} · {node.id} · {area} (round {node.round})")


def dispatch_work_item(item: WorkItem) -> None:
    """Queue a work item on `work`, ahead of items of lower priority."""
    _send(EXECUTE_WORK_ITEM, [item.id], f"{item.run_id} · cycle {item.cycle} · {item.id} · {item.title}",
          broker_priority(item.priority))


def dispatch_judge(run_id: str, cycle: int) -> None:
    """Queue the judging of a cycle on `judge`."""
    _send(JUDGE_CYCLE, [run_id, cycle], f"{run_id} · cycle {cycle} · judge")


def dispatch_check(run_id: str) -> None:
    """Queue a check of the run's branch head (if it moved since the last check) on `work`, ahead of items."""
    _send(CHECK_BRANCH, [run_id], f"{run_id} · check the branch head", HIGHEST)


def dispatch_sweep(run_id: str) -> None:
    """Queue a sweep of the run's repository's leftover pending refs on `work`."""
    _send(SWEEP_PENDING_REFS, [run_id], f"{run_id} · sweep pending refs", HIGHEST)
