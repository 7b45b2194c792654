"""Work items and their leases in Redis: add, claim, refresh, requeue, settle, drop.

Every transition that puts an item back in the queue sees its run's record in the same transaction: while
the run is paused the item is parked (nothing dispatches it; resuming the run does).
"""

from __future__ import annotations

import json

from enum import Enum

from orchestrator.state.keys import Keys
from orchestrator.state.metrics import observe_attempt
from orchestrator.state.models import (SETTLED_ITEM_STATUSES, Attempt, AttemptOutcome, Handoff, ItemStatus, Run,
                                       WorkItem, now)
from orchestrator.state.nodes import NodeRecords
from orchestrator.state.records import JsonRecords, TransitionRefused, UnknownRecord

# KEYS[1] a lease, ARGV[1] the attempt that should hold it, ARGV[2] its new TTL in seconds.
EXTEND_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Claim(Enum):
    """What a delivery's claim did."""

    CLAIMED = "claimed"  # running, as a new attempt under a lease
    PARKED = "parked"  # its run is paused: the item waits, parked, until the run resumes
    NOT_QUEUED = "not_queued"  # a duplicate or late delivery: nothing changed


def queued_fields(run: Run) -> dict:
    """The fields of an item going (back) to the queue: parked while its run is paused."""
    return {"status": ItemStatus.QUEUED, "parked": run.is_paused, "queued_at": now()}


def _ended(attempts: list[Attempt], outcome: AttemptOutcome) -> list[Attempt]:
    """`attempts` with the running (last) one ended now with `outcome`."""
    if not attempts or attempts[-1].ended_at is not None:
        return attempts
    return [*attempts[:-1], attempts[-1].model_copy(update={"ended_at": now(), "outcome": AttemptOutcome(outcome)})]


def _observe_ended(pipe, item: WorkItem) -> None:
    """Count the attempt that just ended in the attempt-duration histogram."""
    if item.attempts and item.attempts[-1].ended_at is not None:
        last = item.attempts[-1]
        observe_attempt(pipe, last.ended_at - last.started_at, last.outcome or "unknown")


class ItemRecords:
    """Work items and their leases: add, claim, refresh, requeue, settle, drop."""

    def __init__(self, records: JsonRecords, nodes: NodeRecords):
        self.records, self.nodes = records, nodes
        self.redis = records.redis
        self._extend_if_held = self.redis.register_script(EXTEND_IF_HELD)

    def add(self, item: WorkItem, max_per_cycle: int) -> str:
        """Record a new item (queued, or awaiting approval) as a child of its planning node; "" or the reason
        it was refused."""
        return self.nodes.add_child(item.node_id, item.id, Keys.item(item.id), item.model_dump_json(),
                                    Keys.cycle_items(item.run_id, item.cycle), max_per_cycle,
                                    extra={Keys.run_items(item.run_id): item.id})

    def get(self, item_id: str) -> WorkItem:
        """The item `item_id`; UnknownRecord (naming it) if there is none."""
        try:
            return self.records.load(Keys.item(item_id), WorkItem)
        except UnknownRecord:
            raise UnknownRecord(f"unknown work item {item_id}") from None

    def many(self, item_ids: list[str]) -> list[WorkItem]:
        """Load many items in one round trip (missing ones are skipped)."""
        return self.records.load_many([Keys.item(i) for i in item_ids], WorkItem)

    def cancels_requested(self, item_ids: list[str]) -> set[str]:
        """Which of these items an operator asked to cancel (`cadre cancel`): one round trip, and only their
        `cancel_requested` flag read, for watchers that ask every second for hundreds of running items."""
        if not item_ids:
            return set()
        raws = self.redis.mget([Keys.item(i) for i in item_ids])
        return {item_id for item_id, raw in zip(item_ids, raws, strict=True)
                if raw is not None and json.loads(raw).get("cancel_requested") is True}

    def ids_of_run(self, run_id: str) -> list[str]:
        """Ids of every item of the run (all cycles), in creation order."""
        return list(self.redis.lrange(Keys.run_items(run_id), 0, -1))

    def claim(self, item_id: str, run_id: str, lease_seconds: int, host: str = "", celery_hostname: str = "",
              pid: int = 0) -> tuple[Claim, WorkItem | None]:
        """Take a queued item: `running`, next attempt number (recorded with who runs it), lease set; or park it
        if its run is paused at that very moment. NOT_QUEUED (and None): a duplicate or late delivery."""
        def change(item: WorkItem, run: Run) -> WorkItem:
            if item.status is not ItemStatus.QUEUED:
                raise TransitionRefused(f"item {item_id} is {item.status}")
            if run.is_paused:
                return item.model_copy(update={"parked": True})
            attempt = Attempt(number=item.attempt + 1, host=host, celery_hostname=celery_hostname, pid=pid)
            return item.model_copy(update={"status": ItemStatus.RUNNING, "attempt": attempt.number, "parked": False,
                                           "started_at": attempt.started_at, "attempts": [*item.attempts, attempt]})

        def also(pipe, _old, new: WorkItem) -> None:
            if new.status is ItemStatus.RUNNING:
                pipe.set(Keys.lease(item_id), new.attempt, ex=lease_seconds)
                pipe.sadd(Keys.running_items(), item_id)

        claimed = self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also,
                                                  seen=(Keys.run(run_id), Run))
        if claimed is None:
            return Claim.NOT_QUEUED, None
        return (Claim.CLAIMED if claimed.status is ItemStatus.RUNNING else Claim.PARKED), claimed

    def refresh_lease(self, item_id: str, attempt: int, lease_seconds: int) -> bool:
        """Extend the lease if `attempt` still holds it, atomically (compare and extend in one script);
        False if the lease is gone or another attempt holds it, which is never touched."""
        return bool(self._extend_if_held(keys=[Keys.lease(item_id)], args=[attempt, lease_seconds]))

    def settle(self, item_id: str, attempt: int, status: ItemStatus, handoff: Handoff,
               outcome: AttemptOutcome | None = None) -> WorkItem | None:
        """Settle a running attempt with its handoff and drop it from its node's pending set, atomically.

        An attempt stopped by `cadre cancel` settles `cancelled` (one that landed first stays done). None if
        the item is not running `attempt` (already settled or taken over): nothing is written.
        """
        assert status in SETTLED_ITEM_STATUSES

        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.RUNNING or item.attempt != attempt:
                raise TransitionRefused(f"item {item_id} is {item.status} at attempt {item.attempt}")
            ended = ItemStatus.CANCELLED if item.cancel_requested and status is ItemStatus.FAILED else status
            return item.model_copy(update={"status": ended, "handoff": handoff, "settled_at": now(),
                                           "attempts": _ended(item.attempts,
                                                              outcome or AttemptOutcome(handoff.status.value))})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.node_pending(new.node_id), item_id)
            pipe.srem(Keys.running_items(), item_id)
            pipe.delete(Keys.lease(item_id))
            _observe_ended(pipe, new)

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also)

    def drop(self, item_id: str, handoff: Handoff, status: ItemStatus = ItemStatus.FAILED) -> WorkItem | None:
        """Settle a waiting item (queued or awaiting approval) without running it, as `status`: `failed` when
        its run has ended, `cancelled` when an operator dropped it. None if it was not waiting."""
        def change(item: WorkItem) -> WorkItem:
            if item.status not in (ItemStatus.QUEUED, ItemStatus.AWAITING_APPROVAL):
                raise TransitionRefused(f"item {item_id} is {item.status}")
            return item.model_copy(update={"status": status, "handoff": handoff, "settled_at": now(),
                                           "parked": False})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.node_pending(new.node_id), item_id)

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also)

    def requeue(self, item: WorkItem, interrupted: bool = False, outcome: AttemptOutcome | None = None,
                handoff: Handoff | None = None) -> WorkItem | None:
        """Put `item`'s running attempt back in the queue (parked if its run is paused); None if that attempt
        no longer runs.

        The attempt counts as a failure (a crash, an error, a lost worker) unless it was `interrupted`
        (a graceful stop: SIGTERM, a rolling restart, a scale-in, a pause), which is counted apart. An item
        an operator cancelled meanwhile settles `cancelled`, with `handoff`: nothing undoes a cancel.
        """
        def change(current: WorkItem, run: Run) -> WorkItem:
            if current.status is not ItemStatus.RUNNING or current.attempt != item.attempt:
                raise TransitionRefused(f"item {item.id} is {current.status} at attempt {current.attempt}")
            counter = "interruptions" if interrupted else "failures"
            ended = _ended(current.attempts,
                           outcome or (AttemptOutcome.INTERRUPTED if interrupted else AttemptOutcome.ERROR))
            if current.cancel_requested:
                return current.model_copy(update={"status": ItemStatus.CANCELLED, "attempts": ended,
                                                  "settled_at": now(), "handoff": handoff or current.handoff})
            return current.model_copy(update={**queued_fields(run), counter: getattr(current, counter) + 1,
                                              "attempts": ended})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.running_items(), item.id)
            pipe.delete(Keys.lease(item.id))
            if new.status is ItemStatus.CANCELLED:
                pipe.srem(Keys.node_pending(new.node_id), item.id)
            _observe_ended(pipe, new)

        return self.records.transition_or_none(Keys.item(item.id), WorkItem, change, also=also,
                                               seen=(Keys.run(item.run_id), Run))

    def add_continuation(self, stalled: WorkItem, continuation: WorkItem) -> bool:
        """Record `continuation` (queued, pending on the stalled item's node, which still waits for the stalled
        one) as the one continuation of `stalled`'s running attempt; False if it already has one."""
        def change(current: WorkItem) -> WorkItem:
            if current.continued_by is not None or current.status is not ItemStatus.RUNNING:
                raise TransitionRefused(f"item {stalled.id} already continued by {current.continued_by}")
            return current.model_copy(update={"continued_by": continuation.id})

        def also(pipe, _old, _new) -> None:
            pipe.set(Keys.item(continuation.id), continuation.model_dump_json())
            pipe.sadd(Keys.node_pending(continuation.node_id), continuation.id)
            pipe.rpush(Keys.node_items(continuation.node_id), continuation.id)
            pipe.rpush(Keys.run_items(continuation.run_id), continuation.id)
            pipe.rpush(Keys.cycle_items(continuation.run_id, continuation.cycle), continuation.id)

        return self.records.transition_or_none(Keys.item(stalled.id), WorkItem, change, also=also) is not None

    def running_ids(self) -> list[str]:
        """Items with a running attempt, in any run."""
        return sorted(self.redis.smembers(Keys.running_items()))

    def lease_holder(self, item_id: str) -> int | None:
        """The attempt number holding the item's lease, or None if the lease has lapsed."""
        held = self.redis.get(Keys.lease(item_id))
        return int(held) if held is not None else None
