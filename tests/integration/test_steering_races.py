"""The races of a live run that steering must win, on a real Redis: a pause between a claim and an agent's start,
two hosts resuming (or a resume and a tick) at once, and a stale worker after a cancel."""

from __future__ import annotations

import threading

import pytest

from orchestrator.flow.cycles import new_cycle
from orchestrator.state.items import Claim
from orchestrator.state.models import (AttemptOutcome, Handoff, HandoffStatus, ItemStatus, Run, RunStatus, WorkItem,
                                       new_id)

pytestmark = pytest.mark.integration


def a_run_with_items(store, count: int) -> tuple[Run, list[WorkItem]]:
    run = Run(id=new_id("run"), repo="file:///r.git", branch="main", goal="g", max_cycles=1)
    cycle, root = new_cycle(run.id, 1)
    store.runs.create(run, cycle, root)
    store.nodes.start(root.id, run.id)
    items = [WorkItem(id=new_id("item"), run_id=run.id, cycle=1, node_id=root.id, title=f"t{k}", instructions="i")
             for k in range(count)]
    for item in items:
        assert store.items.add(item, 100) == ""
    return run, items


def pause(store, run: Run) -> None:
    assert store.steering.set_status(run.id, RunStatus.PAUSED, frozenset({RunStatus.RUNNING})) is not None


def test_a_delivery_while_paused_parks_and_an_attempt_given_back_while_paused_is_parked(store):
    run, (first, second) = a_run_with_items(store, 2)
    claim, running = store.items.claim(first.id, run.id, 30)
    assert claim is Claim.CLAIMED and running.status is ItemStatus.RUNNING
    pause(store, run)
    # A delivery that arrives now parks its item, in the same transaction as the run's status.
    claim, parked = store.items.claim(second.id, run.id, 30)
    assert claim is Claim.PARKED and parked.status is ItemStatus.QUEUED and parked.parked
    assert store.items.lease_holder(second.id) is None, "a parked item holds no lease"
    # The attempt claimed before the pause gives its item back before its agent starts (or the reaper does, if
    # its worker died): the item is parked, not dispatched, and the attempt does not count as a failure.
    back = store.items.requeue(running, interrupted=True, outcome=AttemptOutcome.INTERRUPTED)
    assert back.status is ItemStatus.QUEUED and back.parked and back.failures == 0 and back.interruptions == 1


def test_two_hosts_resuming_at_once_send_each_parked_item_exactly_once(store):
    run, items = a_run_with_items(store, 40)
    pause(store, run)
    for item in items:
        assert store.items.claim(item.id, run.id, 30)[0] is Claim.PARKED
    store.steering.set_status(run.id, RunStatus.RUNNING, frozenset({RunStatus.PAUSED}))
    sent: list[list[str]] = [[], [], []]
    barrier = threading.Barrier(3)

    def resume_on_a_host(k: int) -> None:  # what send_parked_work does on each host, without the broker
        barrier.wait()
        for item in items:
            if (unparked := store.steering.unpark_item(item.id)) is not None:
                sent[k].append(unparked.id)

    threads = [threading.Thread(target=resume_on_a_host, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for part in sent for i in part]
    assert sorted(every) == sorted(i.id for i in items), "each parked item sent once, none twice, none left"
    assert not any(store.items.get(i.id).parked for i in items)


def test_a_stale_worker_never_undoes_a_cancel(store):
    run, (item,) = a_run_with_items(store, 1)
    _, running = store.items.claim(item.id, run.id, 30)
    assert store.steering.request_cancel(item.id).cancel_requested
    # The reaper (the worker's lease lapsed) or the worker itself requeueing: the item ends cancelled.
    cancelled = store.items.requeue(running, outcome=AttemptOutcome.LOST,
                                    handoff=Handoff(status=HandoffStatus.RESCUED, rescue_branch="cadre/rescue/x/1"))
    assert cancelled.status is ItemStatus.CANCELLED and cancelled.handoff.rescue_branch == "cadre/rescue/x/1"
    # The stale attempt settling late changes nothing.
    assert store.items.settle(item.id, running.attempt, ItemStatus.FAILED,
                              Handoff(status=HandoffStatus.FAILED)) is None
    assert store.items.get(item.id).status is ItemStatus.CANCELLED
    # An attempt stopped by the cancel settles cancelled, even when it reports a failure.
    run2, (other,) = a_run_with_items(store, 1)
    _, running2 = store.items.claim(other.id, run2.id, 30)
    store.steering.request_cancel(other.id)
    settled = store.items.settle(other.id, running2.attempt, ItemStatus.FAILED, Handoff(status=HandoffStatus.RESCUED))
    assert settled.status is ItemStatus.CANCELLED
    # A retry gives it a new attempt; the old attempt's late requeue cannot touch the new one.
    retried = store.steering.retry(settled)
    assert retried.status is ItemStatus.QUEUED and not retried.cancel_requested and retried.failures == 0
    assert store.items.requeue(running2) is None


def test_nothing_judges_or_starts_a_cycle_while_paused(store):
    run, _items = a_run_with_items(store, 1)
    pause(store, run)
    assert not store.cycles.begin_judging(run.id, 1), "a paused run's cycle is not handed to the judge"
    cycle, root = new_cycle(run.id, 2)
    assert not store.runs.advance_cycle(run.id, 1, cycle, root), "a paused run starts no cycle"
    store.steering.set_status(run.id, RunStatus.RUNNING, frozenset({RunStatus.PAUSED}))
    assert store.cycles.begin_judging(run.id, 1)
