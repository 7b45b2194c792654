"""One planner node's life: snapshot, agent, children recorded, node waits for them to settle."""

from __future__ import annotations

import logging

from orchestrator.agent_runner import run_role_agent
from orchestrator.cycle_flow import node_maybe_settled
from orchestrator.models import TERMINAL_RUN_STATUSES, PlannerNode, Run
from orchestrator.prompts import render
from orchestrator.settings import CadreSettings, get_settings
from orchestrator.store import Store
from orchestrator.workspace import prepare_cache, worktree_slot
from orchestrator.workspace_tools import WorkspaceTools
from planners.planner_tools import PlannerTools

log = logging.getLogger(__name__)


def previous_focus(store: Store, run: Run, cycle: int) -> str:
    """The judge's reason and `next_focus` from the cycle before `cycle`, if any."""
    if cycle <= 1:
        return ""
    verdict = store.cycle(run.id, cycle - 1).verdict
    return f"{verdict.reason}\nNext focus: {verdict.next_focus}" if verdict else ""


def work_so_far(store: Store, run: Run) -> list[dict]:
    """The run's items with their outcome, for the planner's prompt."""
    return [
        {"id": i.id, "cycle": i.cycle, "title": i.title, "status": i.status.value,
         "summary": i.handoff.summary if i.handoff else ""}
        for i in store.items(store.run_item_ids(run.id))
    ]


def plan_node(store: Store, node_id: str) -> None:
    """Run the planner agent of a pending node, then let the node wait for (or settle with) its children.

    A delivery for a node that is not pending is dropped: it was already planned. A planner that
    fails still ends its node (marked with the error), so the cycle goes on to its judge.
    """
    node = store.start_node(node_id)
    if node is None:
        log.info("node %s is not pending; duplicate delivery dropped", node_id)
        return
    run = store.run(node.run_id)
    store.emit(run.id, "node_started", node_id=node.id, cycle=node.cycle)
    summary, error = f"run already {run.status}", ""
    try:
        if run.status not in TERMINAL_RUN_STATUSES:
            summary = _run_planner_agent(store, get_settings(), run, node)
    except BaseException as exc:
        summary, error = "planner failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        store.finish_planning(node_id, summary, error)
        store.emit(run.id, "node_planned", node_id=node.id, summary=summary, error=error)
        node_maybe_settled(store, node_id)


def _run_planner_agent(store: Store, settings: CadreSettings, run: Run, node: PlannerNode) -> str:
    cache = prepare_cache(settings.data_dir, run.repo)
    with worktree_slot(cache, "planner", f"refs/remotes/origin/{run.branch}") as snapshot:
        planner_tools = PlannerTools(store, node, settings.max_tasks_per_cycle)
        tools = WorkspaceTools(snapshot, settings.command_timeout_seconds).explore_tools() + planner_tools.tools()
        variables = dict(goal=run.goal, branch=run.branch, cycle=node.cycle, max_cycles=run.max_cycles,
                         focus=previous_focus(store, run, node.cycle), work_so_far=work_so_far(store, run),
                         max_items=settings.max_tasks_per_cycle)
        result = run_role_agent(store, "planner", run.id, f"planner-{node.id}",
                                render("planner", "system", **variables), render("planner", "task", **variables),
                                tools)
    created = len(planner_tools.created)
    return str(result.final_arguments.get("summary") or f"planner ended ({result.status}) after {created} items")
