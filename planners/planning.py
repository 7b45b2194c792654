"""One planner node's round: snapshot, agent, children recorded, then the node waits for them.

A node's first round plans its scope (the whole goal for the root, an area for a sub-planner);
each later round is a wake-up, run when all children of the previous round have settled, with
their handoffs and the branch's check result in hand.
"""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import run_prompts, run_role_agent, workspace_tools
from orchestrator.flow.checks import check_branch_head
from orchestrator.flow.cycles import node_maybe_settled
from orchestrator.flow.steering import drain_if_idle, guidance_for
from orchestrator.flow.repository import repository_cache
from orchestrator.git.workspace import worktree_slot
from orchestrator.state.models import ItemStatus, PlannerNode, Run
from orchestrator.state.store import Store
from planners.planner_tools import PlannerTools

log = logging.getLogger(__name__)
IN_FLIGHT = {ItemStatus.QUEUED, ItemStatus.RUNNING}


def previous_focus(store: Store, run: Run, cycle: int) -> str:
    """The judge's reason and `next_focus` from the cycle before `cycle`, if any."""
    if cycle <= 1:
        return ""
    verdict = store.cycles.get(run.id, cycle - 1).verdict
    return f"{verdict.reason}\nNext focus: {verdict.next_focus}" if verdict else ""


def work_so_far(store: Store, run: Run) -> list[dict]:
    """The run's items with their outcome, for the planner's prompt."""
    return [
        {"id": i.id, "cycle": i.cycle, "title": i.title, "status": i.status.value, "scope": i.scope,
         "summary": i.handoff.summary if i.handoff else ""}
        for i in store.items.many(store.items.ids_of_run(run.id))
    ]


def children_handoffs(store: Store, node: PlannerNode) -> list[dict]:
    """Handoffs of the children the node created in its previous round (items and sub-planners)."""
    child_ids = store.nodes.child_ids(node.id)
    views = []
    for item in store.items.many([i for i in child_ids if i.startswith("item-")]):
        if item.round == node.round - 1:
            handoff = item.handoff
            views.append({"kind": "work item", "id": item.id, "title": item.title, "status": item.status.value,
                          "handoff": handoff.status.value if handoff else "",
                          "commit": handoff.commit if handoff else None, "summary": handoff.summary if handoff else "",
                          "concerns": handoff.concerns if handoff else "", "deviations": handoff.deviations if handoff else "",
                          "findings": handoff.findings if handoff else "",
                          "suggestions": handoff.suggestions if handoff else "",
                          "rescue_branch": handoff.rescue_branch if handoff else None})
    for child in store.nodes.many([i for i in child_ids if i.startswith("node-")]):
        if child.parent_round == node.round - 1:
            views.append({"kind": "sub-planner", "id": child.id, "title": child.area, "status": child.status.value,
                          "handoff": "",
                          "commit": None, "summary": child.summary, "concerns": child.error, "deviations": "",
                          "findings": "", "suggestions": "", "rescue_branch": None})
    return views


def plan_node(store: Store, settings: CadreSettings, node_id: str) -> None:
    """Run one planning round of a pending node, then let the node wait for (or settle with) its children.

    A delivery for a node that is not pending is dropped. A planner that fails still ends its round
    (marked with the error), so the tree and the cycle go on.
    """
    node = store.nodes.start(node_id, store.nodes.get(node_id).run_id)
    if node is None:
        log.info("node %s is not pending; duplicate delivery dropped", node_id)
        return
    if node.parked:
        store.events.emit(node.run_id, "node_parked", node_id=node.id, round=node.round)
        log.info("node %s parked: its run is paused", node_id)
        return
    run = store.runs.get(node.run_id)
    store.events.emit(run.id, "node_started", node_id=node.id, cycle=node.cycle, round=node.round, depth=node.depth)
    summary, error = f"run already {run.status}", ""
    try:
        if not run.is_over:
            summary = _run_planner_agent(store, settings, run, node)
    except BaseException as exc:
        summary, error = "planner failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        store.nodes.finish_planning(node_id, summary, error)
        store.events.emit(run.id, "node_planned", node_id=node.id, round=node.round, summary=summary, error=error)
        node_maybe_settled(store, node_id, settings.planning.max_rounds_per_node)
        drain_if_idle(store, run.id)


def _variables(store: Store, settings: CadreSettings, run: Run, node: PlannerNode, snapshot: Path) -> dict:
    work = work_so_far(store, run)
    check_failure = ""
    if node.round > 1:
        check = check_branch_head(store, settings, run, node.cycle, snapshot, f"wake-up of {node.id}")
        check_failure = check.output if check.passed is False else ""
    return dict(goal=run.goal, branch=run.branch, cycle=node.cycle, max_cycles=run.max_cycles,
                focus=previous_focus(store, run, node.cycle), work_so_far=work,
                in_flight=[w for w in work if w["status"] in {s.value for s in IN_FLIGHT}],
                max_items=settings.planning.max_tasks_per_cycle, area=node.area, brief=node.brief, depth=node.depth,
                can_spawn=node.depth < settings.planning.max_depth, round=node.round,
                max_rounds=settings.planning.max_rounds_per_node, children=children_handoffs(store, node) if node.round > 1 else [],
                check_command=run.check_command or "", check_failure=check_failure,
                guidance=guidance_for(store, run.id, "planners"))


def _run_planner_agent(store: Store, settings: CadreSettings, run: Run, node: PlannerNode) -> str:
    role = "planner" if node.parent_id is None else "subplanner"
    cache = repository_cache(store, settings, run)
    with worktree_slot(cache, "planner", f"refs/remotes/origin/{run.branch}") as snapshot:
        planner_tools = PlannerTools(store, node, settings)
        tools = workspace_tools(settings, snapshot).explore_tools() + planner_tools.tools()
        prompts = run_prompts(settings, run, snapshot)
        variables = _variables(store, settings, run, node, snapshot)
        task = "followup" if node.round > 1 else "task"
        result = run_role_agent(store, settings, role, run.id, f"{role}-{node.id}-round-{node.round}",
                                prompts.render(role, "system", **variables), prompts.render(role, task, **variables),
                                tools, scopes={"cycle": str(node.cycle), "node": node.id})
    created = len(planner_tools.created)
    return str(result.final_arguments.get("summary") or f"planner ended ({result.status}) after {created} children")
