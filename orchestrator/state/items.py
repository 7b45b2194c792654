"""Work items and their leases in Redis: add, claim, refresh, requeue, settle."""

from __future__ import annotations

from orchestrator.state.keys import Keys
from orchestrator.state.metrics import observe_attempt
from orchestrator.state.models import SETTLED_ITEM_STATUSES, Attempt, AttemptOutcome, Handoff, ItemStatus, WorkItem, now
from orchestrator.state.nodes import NodeRecords
from orchestrator.state.records import JsonRecords, TransitionRefused, UnknownRecord

# KEYS[1] a lease, ARGV[1] the attempt that should hold it, ARGV[2] its new TTL in seconds.
EXTEND_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


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
    """Work items and their leases: add, claim, refresh, requeue, settle."""

    def __init__(self, records: JsonRecords, nodes: NodeRecords):
        self.records, self.nodes = records, nodes
        self.redis = records.redis
        self._extend_if_held = self.redis.register_script(EXTEND_IF_HELD)

    def add(self, item: WorkItem, max_per_cycle: int) -> str:
        """Record a new pending item as a child of its planning node; "" or the reason it was refused."""
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

    def ids_of_run(self, run_id: str) -> list[str]:
        """Ids of every item of the run (all cycles), in creation order."""
        return list(self.redis.lrange(Keys.run_items(run_id), 0, -1))

    def claim(self, item_id: str, lease_seconds: int, host: str = "", celery_hostname: str = "",
              pid: int = 0) -> WorkItem | None:
        """Take a pending item: `running`, next attempt number (recorded with who runs it), lease set.

        None if the item is not pending (a duplicate or late delivery).
        """
        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.PENDING:
                raise TransitionRefused(f"item {item_id} is {item.status}")
            attempt = Attempt(number=item.attempt + 1, host=host, celery_hostname=celery_hostname, pid=pid)
            return item.model_copy(update={"status": ItemStatus.RUNNING, "attempt": attempt.number,
                                           "started_at": attempt.started_at, "attempts": [*item.attempts, attempt]})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.set(Keys.lease(item_id), new.attempt, ex=lease_seconds)
            pipe.sadd(Keys.running_items(), item_id)

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also)

    def refresh_lease(self, item_id: str, attempt: int, lease_seconds: int) -> bool:
        """Extend the lease if `attempt` still holds it, atomically (compare and extend in one script);
        False if the lease is gone or another attempt holds it, which is never touched."""
        return bool(self._extend_if_held(keys=[Keys.lease(item_id)], args=[attempt, lease_seconds]))

    def settle(self, item_id: str, attempt: int, status: ItemStatus, handoff: Handoff,
               outcome: AttemptOutcome | None = None) -> WorkItem | None:
        """Settle a running attempt with its handoff and drop it from its node's pending set, atomically.

        None if the item is not running `attempt` (already settled or taken over): nothing is written.
        """
        assert status in SETTLED_ITEM_STATUSES

        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.RUNNING or item.attempt != attempt:
                raise TransitionRefused(f"item {item_id} is {item.status} at attempt {item.attempt}")
            return item.model_copy(update={"status": status, "handoff": handoff, "settled_at": now(),
                                           "attempts": _ended(item.attempts,
                                                              outcome or AttemptOutcome(handoff.status.value))})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.node_pending(new.node_id), item_id)
            pipe.srem(Keys.running_items(), item_id)
            pipe.delete(Keys.lease(item_id))
            _observe_ended(pipe, new)

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also)

    def cancel(self, item_id: str, handoff: Handoff) -> WorkItem | None:
        """Settle a pending item `failed` without running it (its run has ended); None if not pending."""
        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.PENDING:
                raise TransitionRefused(f"item {item_id} is {item.status}")
            return item.model_copy(update={"status": ItemStatus.FAILED, "handoff": handoff, "settled_at": now()})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.node_pending(new.node_id), item_id)

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also)

    def requeue(self, item_id: str, attempt: int, interrupted: bool = False,
                outcome: AttemptOutcome | None = None) -> WorkItem | None:
        """Put running `attempt` back to pending; None if not running it.

        The attempt counts as a failure (a crash, an error, a lost worker) unless it was `interrupted`
        (a graceful stop: SIGTERM, a rolling restart, a scale-in), which is counted apart.
        """
        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.RUNNING or item.attempt != attempt:
                raise TransitionRefused(f"item {item_id} is {item.status} at attempt {item.attempt}")
            counter = "interruptions" if interrupted else "failures"
            ended = _ended(item.attempts,
                           outcome or (AttemptOutcome.INTERRUPTED if interrupted else AttemptOutcome.ERROR))
            return item.model_copy(update={"status": ItemStatus.PENDING, counter: getattr(item, counter) + 1,
                                           "attempts": ended, "queued_at": now()})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.running_items(), item_id)
            pipe.delete(Keys.lease(item_id))
            _observe_ended(pipe, new)

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change, also=also)

    def running_ids(self) -> list[str]:
        """Items with a running attempt, in any run."""
        return sorted(self.redis.smembers(Keys.running_items()))

    def lease_holder(self, item_id: str) -> int | None:
        """The attempt number holding the item's lease, or None if the lease has lapsed."""
        held = self.redis.get(Keys.lease(item_id))
        return int(held) if held is not None else None
