"""A work item's delivery: claim, attempt under a lease, then settle or requeue, exactly once."""

from __future__ import annotations

import logging
import os
import socket
import time

from celery.exceptions import SoftTimeLimitExceeded

from orchestrator.config.settings import CadreSettings, get_settings
from orchestrator.flow.cycles import item_settled, requeue_or_fail
from orchestrator.state.models import TERMINAL_RUN_STATUSES, Handoff, HandoffStatus, ItemStatus, WorkItem
from orchestrator.state.store import Store
from workers.attempt import Outcome, attempt_item
from workers.lease import LeaseHeartbeat

log = logging.getLogger(__name__)


def worker_identity() -> str:
    """`host:pid` of this process, recorded on claims (who ran which attempt)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_work_item(store: Store, item_id: str, node: str = "") -> None:
    """Claim and carry out one attempt of a work item; a delivery for an item not pending is dropped.

    The attempt ends settled (`done` or `failed`, with its handoff) or requeued as a new attempt
    (shutdown, an error, within the attempt bound); either way its planner node is told once.
    """
    settings = get_settings()
    pending = store.items.get(item_id)
    run = store.runs.get(pending.run_id)
    if run.status in TERMINAL_RUN_STATUSES:
        cancelled = store.items.cancel(item_id, Handoff(status=HandoffStatus.FAILED, attempt=pending.attempt,
                                                       summary=f"not started: run ended {run.status.value}"))
        if cancelled is not None:
            item_settled(store, cancelled)
        else:
            store.events.emit(run.id, "delivery_dropped", item_id=item_id, worker=worker_identity())
        return
    item = store.items.claim(item_id, settings.lease_seconds, socket.gethostname(), node, os.getpid())
    if item is None:
        store.events.emit(run.id, "delivery_dropped", item_id=item_id, worker=worker_identity())
        log.info("item %s is not pending; duplicate or stale delivery dropped", item_id)
        return
    store.events.emit(run.id, "item_claimed", item_id=item.id, attempt=item.attempt, worker=worker_identity())
    started = time.monotonic()
    outcome = Outcome(ItemStatus.FAILED, Handoff(status=HandoffStatus.FAILED, summary="not started",
                                                 attempt=item.attempt))
    try:
        with LeaseHeartbeat(store, item.id, item.attempt, settings.lease_seconds) as lease:
            outcome = attempt_item(store, settings, run, item, lease)
    except SoftTimeLimitExceeded:
        outcome = Outcome(ItemStatus.FAILED, Handoff(status=HandoffStatus.FAILED, attempt=item.attempt,
                                                     summary="time limit exceeded"))
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        outcome = Outcome(None, Handoff(status=HandoffStatus.FAILED, summary=error, attempt=item.attempt), error)
        raise
    finally:
        finish_attempt(store, settings, item, outcome, round(time.monotonic() - started, 3))


def finish_attempt(store: Store, settings: CadreSettings, item: WorkItem, outcome: Outcome, seconds: float) -> None:
    """Settle or requeue the attempt; a stale attempt (its item taken over) changes nothing but an event."""
    handoff = outcome.handoff.model_copy(update={"seconds": seconds})
    if outcome.status is None:
        if requeue_or_fail(store, item, outcome.reason, settings.max_attempts, handoff,
                           outcome.interrupted, outcome.attempt_outcome) == "stale":
            _report_stale(store, item, handoff)
        return
    settled = store.items.settle(item.id, item.attempt, outcome.status, handoff)
    if settled is None:
        _report_stale(store, item, handoff)
        return
    store.events.emit(item.run_id, "handoff", item_id=item.id, attempt=item.attempt, status=handoff.status.value,
               commit=handoff.commit, rescue_branch=handoff.rescue_branch, summary=handoff.summary)
    item_settled(store, settled)


def _report_stale(store: Store, item: WorkItem, handoff: Handoff) -> None:
    store.events.emit(item.run_id, "stale_attempt", item_id=item.id, attempt=item.attempt,
               rescue_branch=handoff.rescue_branch, summary=handoff.summary)
    log.warning("item %s attempt %s was stale; its work is on %s", item.id, item.attempt, handoff.rescue_branch)
