"""The periodic tick (`cadre beat`): a safety net that re-triggers what a lost message left waiting.

Every step it takes is an idempotent transition, so a tick racing the normal trigger is harmless.
"""

from __future__ import annotations

import logging

from orchestrator.cycle_flow import close_cycle, node_maybe_settled
from orchestrator.models import SETTLED_NODE_STATUSES, CycleStatus, NodeStatus, now
from orchestrator.settings import CadreSettings
from orchestrator.store import Store
from judge.reaper import reap_lapsed_attempts

log = logging.getLogger(__name__)
PLANNER_GRACE_SECONDS = 120


def tick(store: Store, settings: CadreSettings) -> None:
    """Reap lapsed leases; then, for every active run, settle a root whose children all settled and hand
    a settled root's cycle to the judge."""
    reap_lapsed_attempts(store, settings)
    for run_id in store.active_run_ids():
        run = store.run(run_id)
        cycle = store.cycle(run_id, run.cycle)
        if cycle.status is not CycleStatus.PLANNING:
            continue
        root = store.node(cycle.root_node_id)
        if root.status is NodeStatus.PLANNING and root.started_at is not None:
            deadline = root.started_at + settings.planner_time_limit_seconds + PLANNER_GRACE_SECONDS
            if now() > deadline and store.finish_planning(root.id, "planner lost", "planner exceeded its time limit"):
                store.emit(run_id, "node_lost", node_id=root.id)
        node_maybe_settled(store, root.id)
        if store.node(root.id).status in SETTLED_NODE_STATUSES:
            close_cycle(store, run_id, run.cycle)
