"""The periodic tick (`cadre beat`): a safety net that re-triggers what a lost message left waiting.

Every step it takes is an idempotent transition, so a tick racing the normal trigger is harmless.
"""

from __future__ import annotations

import logging

from judge.reaper import reap_lapsed_attempts
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.flow.checks import check_branch_head, last_checked_head
from orchestrator.flow.cycles import close_cycle, node_maybe_settled
from orchestrator.flow.runs import repository_cache
from orchestrator.git.runner import GitError
from orchestrator.git.workspace import worktree_slot
from orchestrator.state.models import SETTLED_NODE_STATUSES, CycleStatus, NodeStatus, Run, now
from orchestrator.state.store import Store

log = logging.getLogger(__name__)
PLANNER_GRACE_SECONDS = 120


def tick(store: Store, settings: CadreSettings) -> None:
    """Reap lapsed leases; then for every active run: end planners lost past their time limit, settle
    nodes whose children all settled, hand a settled root's cycle to the judge, and check a moved head."""
    reap_lapsed_attempts(store, settings)
    for run_id in store.runs.active_ids():
        if enforce_run_budget(store, run_id, settings.budget_warning_fraction):
            continue
        run = store.runs.get(run_id)
        cycle = store.cycles.get(run_id, run.cycle)
        if cycle.status is not CycleStatus.PLANNING:
            continue
        nodes = [n for n in store.nodes.many(store.nodes.ids_of_run(run_id)) if n.cycle == run.cycle]
        deadline = now() - settings.planner_time_limit_seconds - PLANNER_GRACE_SECONDS
        for node in sorted(nodes, key=lambda n: -n.depth):  # leaves first, so settling climbs the tree
            if node.status is NodeStatus.PLANNING and node.started_at is not None and node.started_at < deadline:
                if store.nodes.finish_planning(node.id, "planner lost", "planner exceeded its time limit"):
                    store.events.emit(run_id, "node_lost", node_id=node.id)
            node_maybe_settled(store, node.id)
        if store.nodes.get(cycle.root_node_id).status in SETTLED_NODE_STATUSES:
            close_cycle(store, run_id, run.cycle)
        elif run.check_command:
            check_moved_head(store, settings, run)


def check_moved_head(store: Store, settings: CadreSettings, run: Run) -> None:
    """Run the check command on the branch head if it moved since the last check."""
    try:
        cache = repository_cache(store, settings, run)
        head = cache.head(run.branch)
    except GitError as exc:
        log.warning("run %s: cannot read the branch head for the check: %s", run.id, exc)
        return
    if head == last_checked_head(store, run.id):
        return
    with worktree_slot(cache, "judge", head) as worktree:
        check_branch_head(store, settings, run, run.cycle, worktree, "tick")
