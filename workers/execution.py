"""A work item's delivery, top to bottom: claim, attempt under a lease, then settle or requeue, exactly once.

    delivery ─▶ run over? ─▶ claim ─▶ attempt (workers/attempt.py) ─▶ settle (done | failed) ─▶ its node
                  │            │                                    └▶ requeue (retry | resume | paused)
               cancel        parked (the run is paused), or dropped (a duplicate or late delivery)
"""

from __future__ import annotations

import logging
import os
import socket
import time

from celery.exceptions import SoftTimeLimitExceeded

from orchestrator.config.settings import CadreSettings
from orchestrator.flow.cycles import Requeue, item_settled, requeue_or_fail
from orchestrator.landing.strategy import landing_for
from orchestrator.flow.steering import drain_if_idle
from orchestrator.state.items import Claim
from orchestrator.state.models import Handoff, HandoffStatus, ItemStatus, WorkItem
from orchestrator.state.store import Store
from workers.attempt import attempt_item
from workers.lease import LeaseHeartbeat
from workers.outcomes import Next, Outcome

log = logging.getLogger(__name__)
SETTLES_AS = {Next.DONE: ItemStatus.DONE, Next.FAILED: ItemStatus.FAILED, Next.REFUSED: ItemStatus.REFUSED,
              Next.STALLED: ItemStatus.STALLED}


def worker_identity() -> str:
    """`host:pid` of this process, recorded on claims (who ran which attempt)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_work_item(store: Store, settings: CadreSettings, item_id: str, celery_hostname: str = "") -> None:
    """Claim and carry out one attempt of a work item; a delivery for an item not pending is dropped.

    The attempt ends settled (`done` or `failed`, with its handoff) or requeued as a new attempt
    (shutdown, an error, within the attempt bound); either way its planner node is told once.
    """
    pending = store.items.get(item_id)
    run = store.runs.get(pending.run_id)
    if run.is_over:
        cancel_delivery(store, settings, pending, f"not started: run ended {run.status.value}")
        return
    claim, item = store.items.claim(item_id, run.id, settings.lease_seconds, socket.gethostname(), celery_hostname,
                                    os.getpid())
    if claim is Claim.PARKED:
        store.events.emit(run.id, "item_parked", item_id=item_id, worker=worker_identity())
        log.info("item %s parked: its run is paused", item_id)
        return
    if claim is Claim.NOT_QUEUED:
        store.events.emit(run.id, "delivery_dropped", item_id=item_id, worker=worker_identity())
        log.info("item %s is not queued; duplicate or stale delivery dropped", item_id)
        return
    store.events.emit(run.id, "item_claimed", item_id=item.id, attempt=item.attempt, worker=worker_identity())
    started = time.monotonic()
    outcome = Outcome(Next.FAILED, Handoff(status=HandoffStatus.FAILED, summary="not started", attempt=item.attempt))
    try:
        with LeaseHeartbeat(store, item.id, item.attempt, settings.lease_seconds) as lease:
            outcome = attempt_item(store, settings, run, item, lease, landing_for(settings, store))
    except SoftTimeLimitExceeded:
        outcome = Outcome(Next.FAILED, Handoff(status=HandoffStatus.FAILED, attempt=item.attempt,
                                               summary="time limit exceeded"))
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        outcome = Outcome(Next.RETRY, Handoff(status=HandoffStatus.FAILED, summary=error, attempt=item.attempt), error)
        raise
    finally:
        finish_attempt(store, settings, item, outcome, round(time.monotonic() - started, 3))


def cancel_delivery(store: Store, settings: CadreSettings, item: WorkItem, summary: str) -> None:
    """The item's run is over: settle the pending item `failed` without starting it (once)."""
    cancelled = store.items.drop(item.id, Handoff(status=HandoffStatus.FAILED, attempt=item.attempt,
                                                  summary=summary))
    if cancelled is not None:
        item_settled(store, cancelled, settings.planning.max_rounds_per_node)
    else:
        store.events.emit(item.run_id, "delivery_dropped", item_id=item.id, worker=worker_identity())


def finish_attempt(store: Store, settings: CadreSettings, item: WorkItem, outcome: Outcome, seconds: float) -> None:
    """Settle or requeue the attempt; a stale attempt (its item taken over) changes nothing but an event."""
    handoff = outcome.handoff.model_copy(update={"seconds": seconds})
    if outcome.next in (Next.RETRY, Next.RESUME, Next.PAUSED):
        requeued = requeue_or_fail(store, item, outcome.reason, settings.max_attempts,
                                   settings.planning.max_rounds_per_node, handoff,
                                   interrupted=outcome.next is not Next.RETRY, outcome=outcome.attempt_outcome)
        if requeued is Requeue.STALE:
            _report_stale(store, item, handoff)
        drain_if_idle(store, item.run_id)
        return
    status = SETTLES_AS[outcome.next]
    if status is ItemStatus.DONE and not done_is_recorded(handoff):
        log.error("item %s attempt %s: done without a commit or a reason; settling it failed", item.id, item.attempt)
        status, handoff = ItemStatus.FAILED, handoff.model_copy(update={
            "status": HandoffStatus.FAILED, "summary": f"{handoff.summary}\n[not done: no commit was recorded]"})
    settled = store.items.settle(item.id, item.attempt, status, handoff, outcome.attempt_outcome)
    if settled is None:
        _report_stale(store, item, handoff)
        return
    store.events.emit(item.run_id, "handoff", item_id=item.id, attempt=item.attempt, status=handoff.status.value,
                      commit=handoff.commit, rescue_branch=handoff.rescue_branch, summary=handoff.summary)
    item_settled(store, settled, settings.planning.max_rounds_per_node)
    drain_if_idle(store, item.run_id)


def done_is_recorded(handoff: Handoff) -> bool:
    """An item settles `done` only with its commit on the branch (landed), or with the recorded reason it had
    nothing to commit (`no_change`)."""
    if handoff.status is HandoffStatus.LANDED:
        return bool(handoff.commit)
    return handoff.status is HandoffStatus.NO_CHANGE


def _report_stale(store: Store, item: WorkItem, handoff: Handoff) -> None:
    store.events.emit(item.run_id, "stale_attempt", item_id=item.id, attempt=item.attempt,
                      rescue_branch=handoff.rescue_branch, summary=handoff.summary)
    log.warning("item %s attempt %s was stale; its work is on %s", item.id, item.attempt, handoff.rescue_branch)
