"""How settling moves a run forward, step by step, in the order the steps happen:

    item settles ─▶ item_settled ─▶ node_maybe_settled ─┬─▶ WOKEN: the node plans a follow-up round
    (or requeue_or_fail gives up)                        └─▶ SETTLED: its parent may settle in turn ...
                                                              ... a settled root ─▶ close_cycle ─▶ judge
    judge: not done ─▶ start_cycle (a fresh root planner)

Each step is an idempotent store transition, so whoever triggers it (a worker, a planner, the
beat tick) and however often, the judge of a cycle is enqueued once and a cycle starts once.
"""

from __future__ import annotations

import logging
from enum import Enum

from orchestrator.queues.dispatch import dispatch_judge, dispatch_planner, dispatch_work_item
from orchestrator.state.models import (
    AttemptOutcome,
    Cycle,
    Handoff,
    HandoffStatus,
    ItemStatus,
    PlannerNode,
    WorkItem,
    new_id,
)
from orchestrator.state.nodes import NodeSettling
from orchestrator.state.store import Store

log = logging.getLogger(__name__)
# Graceful stops of one item before it settles `failed` anyway (a stop loop is a fault too).
MAX_INTERRUPTIONS = 20


class Requeue(Enum):
    """What `requeue_or_fail` did with a running attempt's item."""

    REQUEUED = "requeued"  # queued again, for a new attempt
    PARKED = "parked"  # queued again, parked: its run is paused, resuming it sends the item
    FAILED = "failed"  # settled `failed`: attempts spent, or the run is over
    CANCELLED = "cancelled"  # settled `cancelled`: an operator cancelled it while it ran
    STALE = "stale"  # nothing: the attempt no longer runs (someone else acted)


def new_cycle(run_id: str, number: int) -> tuple[Cycle, PlannerNode]:
    """A fresh cycle with its root planner node (not yet stored)."""
    root = PlannerNode(id=new_id("node"), run_id=run_id, cycle=number)
    return Cycle(run_id=run_id, number=number, root_node_id=root.id), root


def item_settled(store: Store, item: WorkItem, max_rounds: int) -> None:
    """After an item settled: settle its node if that was the node's last pending child."""
    store.events.emit(item.run_id, "item_settled", item_id=item.id, status=item.status.value,
                      commit=item.handoff.commit if item.handoff else None)
    node_maybe_settled(store, item.node_id, max_rounds)


def requeue_or_fail(store: Store, item: WorkItem, reason: str, max_attempts: int, max_rounds: int,
                    handoff: Handoff | None = None, interrupted: bool = False,
                    outcome: AttemptOutcome | None = None) -> Requeue:
    """Give a running attempt's item to a new attempt at once, or settle it `failed`.

    A failed attempt (crash, error, lost worker) counts towards `max_attempts`; an `interrupted` one
    (a graceful stop) does not, up to MAX_INTERRUPTIONS, so rolling restarts never fail work while a
    crash loop stays bounded.
    """
    run_over = store.runs.get(item.run_id).is_over
    failures = item.failures + (not interrupted)
    gave_up = failures >= max_attempts or item.interruptions + interrupted > MAX_INTERRUPTIONS
    if gave_up or run_over:
        if run_over:
            reason = f"run ended; {reason}"
        else:
            reason = (f"gave up after {item.attempt} attempts ({failures} failed, "
                      f"{item.interruptions + interrupted} interrupted); last: {reason}")
        failed = (handoff or Handoff(status=HandoffStatus.FAILED, attempt=item.attempt)).model_copy(
            update={"summary": reason})
        settled = store.items.settle(item.id, item.attempt, ItemStatus.FAILED, failed, outcome)
        if settled is None:
            return Requeue.STALE
        item_settled(store, settled, max_rounds)
        return Requeue.FAILED
    requeued = store.items.requeue(item, interrupted, outcome, handoff)
    if requeued is None:
        return Requeue.STALE
    if requeued.status is ItemStatus.CANCELLED:
        item_settled(store, requeued, max_rounds)
        return Requeue.CANCELLED
    store.events.emit(item.run_id, "item_requeued", item_id=item.id, attempt=item.attempt, reason=reason,
                      rescue_branch=handoff.rescue_branch if handoff else None, parked=requeued.parked)
    if requeued.parked:
        log.info("item %s attempt %s requeued, parked while its run is paused: %s", item.id, item.attempt, reason)
        return Requeue.PARKED
    dispatch_work_item(item)
    log.info("item %s attempt %s requeued: %s", item.id, item.attempt, reason)
    return Requeue.REQUEUED


def node_maybe_settled(store: Store, node_id: str, max_rounds: int) -> None:
    """Once a node has finished planning and all its children settled: wake it for a follow-up round
    (it made children and has rounds left), or settle it in its parent (or close the cycle for a root)."""
    run_over = store.runs.get(store.nodes.get(node_id).run_id).is_over
    settling = store.nodes.settle_or_wake(node_id, max_rounds, may_wake=not run_over)
    if settling is NodeSettling.UNCHANGED:
        return
    node = store.nodes.get(node_id)
    if settling is NodeSettling.WOKEN:
        store.events.emit(node.run_id, "node_woken", node_id=node.id, round=node.round, parent_id=node.parent_id)
        dispatch_planner(node)
        return
    store.events.emit(node.run_id, "node_settled", node_id=node.id, cycle=node.cycle, status=node.status.value,
                      parent_id=node.parent_id)
    if node.parent_id is None:
        close_cycle(store, node.run_id, node.cycle)
    else:
        node_maybe_settled(store, node.parent_id, max_rounds)


def close_cycle(store: Store, run_id: str, number: int) -> None:
    """The root of cycle `number` has settled: hand the cycle to the judge, once."""
    if store.cycles.begin_judging(run_id, number):
        store.events.emit(run_id, "cycle_judging", cycle=number)
        dispatch_judge(run_id, number)
        log.info("run %s cycle %s: judge enqueued", run_id, number)


def start_cycle(store: Store, run_id: str, from_cycle: int) -> bool:
    """Start cycle `from_cycle + 1` with a fresh root planner, once; False if it already started."""
    cycle, root = new_cycle(run_id, from_cycle + 1)
    if not store.runs.advance_cycle(run_id, from_cycle, cycle, root):
        return False
    store.events.emit(run_id, "cycle_started", cycle=cycle.number, root_node_id=root.id)
    dispatch_planner(root)
    return True
