"""Lost work found and sent again: a message the broker lost, a judge that died with its host.

Work that should be running but is neither running nor waiting in its queue for longer than a grace
period is dispatched again: a pending work item or planner node nobody claimed, a judging cycle whose
judge holds no lease. Claims and leases make a message delivered twice harmless (the second is
dropped), so sending one too many is safe and sending one too few is not.
"""

from __future__ import annotations

import logging

from orchestrator.queues.dispatch import dispatch_judge, dispatch_planner, dispatch_work_item
from orchestrator.queues.inspection import waiting_args
from orchestrator.queues.names import EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE
from orchestrator.state.keys import Keys
from orchestrator.state.models import CycleStatus, ItemStatus, NodeStatus, Run, now
from orchestrator.state.store import Store

log = logging.getLogger(__name__)


def _not_waiting(store: Store, queue: str, task: str, candidates: list) -> list:
    """Those of `candidates` (records with an `id`) whose message is not waiting in `queue`."""
    if not candidates:
        return []
    waiting = {args[0] for args in waiting_args(store.redis, queue, task)}
    return [c for c in candidates if c.id not in waiting]


def resend_lost_work(store: Store, run: Run, grace_seconds: float) -> list[str]:
    """Dispatch again what of `run` has waited more than `grace_seconds` without being queued or running;
    returns the ids sent again."""
    deadline = now() - grace_seconds
    items = [i for i in store.items.many(store.items.ids_of_run(run.id))
             if i.status is ItemStatus.QUEUED and not i.parked and i.queued_at < deadline]
    nodes = [n for n in store.nodes.many(store.nodes.ids_of_run(run.id))
             if n.status is NodeStatus.PENDING and not n.parked and n.queued_at < deadline]
    sent: list[str] = []
    for item in _not_waiting(store, "work", EXECUTE_WORK_ITEM, items):
        dispatch_work_item(item)
        sent.append(item.id)
    for node in _not_waiting(store, "plan", PLAN_NODE, nodes):
        dispatch_planner(node)
        sent.append(node.id)
    cycle = store.cycles.get(run.id, run.cycle)
    if (cycle.status is CycleStatus.JUDGING and (cycle.judging_at or 0) < deadline
            and not store.redis.exists(Keys.judge_lease(run.id, cycle.number))
            and (run.id, cycle.number) not in waiting_args(store.redis, "judge", JUDGE_CYCLE)):
        dispatch_judge(run.id, cycle.number)
        sent.append(f"{run.id}:judge:{cycle.number}")
    for work_id in sent:
        store.events.emit(run.id, "redispatched", id=work_id)
        log.warning("run %s: %s was neither running nor queued; sent again", run.id, work_id)
    return sent
