"""The periodic tick (`cadre beat`): a safety net that re-triggers what a lost message left waiting.

Every step it takes is an idempotent transition, so a tick racing the normal trigger is harmless. It
never runs a check or a sweep itself: it asks for them as tasks of the `work` queue.
"""

from __future__ import annotations

import logging

from orchestrator.config.settings import CadreSettings
from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.flow.cycles import close_cycle, node_maybe_settled
from orchestrator.flow.steering import continue_cycle, drain_if_idle, send_parked_work
from orchestrator.queues.dispatch import dispatch_check, dispatch_sweep
from orchestrator.recovery.reaper import reap_lapsed_attempts
from orchestrator.recovery.resend import resend_lost_work
from orchestrator.state.keys import Keys
from orchestrator.state.models import SETTLED_NODE_STATUSES, CycleStatus, NodeStatus, RunStatus, now
from orchestrator.state.store import Store

log = logging.getLogger(__name__)
PLANNER_GRACE_SECONDS = 120
SWEEP_SECONDS = 600  # leftover pending refs of a run's repository are swept at most this often


def tick(store: Store, settings: CadreSettings) -> None:
    """Short by design (it runs every CADRE_TICK_SECONDS and expires): reap lapsed leases; then for every
    active run enforce budgets and end a draining run once idle; unless the run is paused, send its parked
    work (a resume that died halfway) and what a lost message left waiting, and start a next cycle a pause
    held back; end planners lost past their time limit, settle nodes whose children all settled, hand a
    settled root's cycle to the judge, and ask for (never run) a check of a moved head and a sweep of
    leftover pending refs."""
    reap_lapsed_attempts(store, settings)
    for run_id in store.runs.active_ids():
        if enforce_run_budget(store, run_id, settings.budgets.warning_fraction):
            continue
        run = store.runs.get(run_id)
        if run.status is RunStatus.DRAINING and drain_if_idle(store, run_id):
            continue
        if not run.is_paused:  # a paused run's waiting work is parked on purpose, not lost
            send_parked_work(store, run_id)  # what a resume that died halfway left parked
            resend_lost_work(store, run, settings.tick_seconds)
            continue_cycle(store, run_id, closed_before=now() - settings.tick_seconds)
        cycle = store.cycles.get(run_id, run.cycle)
        if cycle.status is not CycleStatus.PLANNING:
            continue
        nodes = [n for n in store.nodes.many(store.nodes.ids_of_run(run_id)) if n.cycle == run.cycle]
        deadline = now() - settings.role("planner").time_limit_seconds - PLANNER_GRACE_SECONDS
        for node in sorted(nodes, key=lambda n: -n.depth):  # leaves first, so settling climbs the tree
            if node.status is NodeStatus.PLANNING and node.started_at is not None and node.started_at < deadline:
                if store.nodes.finish_planning(node.id, "planner lost", "planner exceeded its time limit"):
                    store.events.emit(run_id, "node_lost", node_id=node.id)
            node_maybe_settled(store, node.id, settings.planning.max_rounds_per_node)
        if store.nodes.get(cycle.root_node_id).status in SETTLED_NODE_STATUSES:
            close_cycle(store, run_id, run.cycle)
        elif run.check_command and store.redis.set(Keys.check_requested(run_id), 1, nx=True,
                                                   ex=max(int(settings.tick_seconds), 1)):
            dispatch_check(run_id)
        if store.redis.set(Keys.sweep_requested(run_id), 1, nx=True, ex=SWEEP_SECONDS):
            dispatch_sweep(run_id)
