"""What an operator changes in a live run, as atomic transitions: pause, resume, drain, its limits, guidance,
and its items (cancel, retry, approve, and sending parked work again).

Each transition sees the records it depends on in the same transaction, so it is safe against the races of
a live run: a worker claiming or requeueing the same item, a tick, another operator on another host.
"""

from __future__ import annotations

from orchestrator.state.items import queued_fields
from orchestrator.state.keys import Keys
from orchestrator.state.models import (LIVE_RUN_STATUSES, SETTLED_NODE_STATUSES, Guidance, ItemStatus, NodeStatus,
                                       PlannerNode, Run, RunStatus, WorkItem, now)
from orchestrator.state.records import JsonRecords, TransitionRefused
from orchestrator.state.runs import RUN_RETENTION_SECONDS

# Limits of a run an operator may change (`cadre budget`), as Run fields.
RUN_LIMITS = ("max_cost_usd", "max_tokens", "max_hours", "max_cycles")


class SteeringRecords:
    """The operator's transitions of runs and items."""

    def __init__(self, records: JsonRecords):
        self.records = records
        self.redis = records.redis

    # Runs
    def set_status(self, run_id: str, to: RunStatus, allowed_from: frozenset[RunStatus]) -> Run | None:
        """Move a live run to `to` (pause, resume, drain) if its status is one of `allowed_from`; else None."""
        def change(run: Run) -> Run:
            if run.status not in allowed_from:
                raise TransitionRefused(f"run {run_id} is {run.status}")
            return run.model_copy(update={"status": to})

        return self.records.transition_or_none(Keys.run(run_id), Run, change)

    def set_limits(self, run_id: str, limits: dict[str, float | int]) -> Run | None:
        """Change a live run's limits (`RUN_LIMITS` fields); None if the run has ended."""
        assert set(limits) <= set(RUN_LIMITS)

        def change(run: Run) -> Run:
            if run.status not in LIVE_RUN_STATUSES:
                raise TransitionRefused(f"run {run_id} is {run.status}")
            return run.model_copy(update=limits)

        return self.records.transition_or_none(Keys.run(run_id), Run, change)

    # Guidance
    def add_guidance(self, run_id: str, guidance: Guidance) -> None:
        self.redis.rpush(Keys.guidance(run_id), guidance.model_dump_json())
        self.redis.expire(Keys.guidance(run_id), RUN_RETENTION_SECONDS)

    def guidance(self, run_id: str) -> list[Guidance]:
        """All guidance of the run so far, oldest first."""
        return [Guidance.model_validate_json(raw) for raw in self.redis.lrange(Keys.guidance(run_id), 0, -1)]

    # Items
    def request_cancel(self, item_id: str) -> WorkItem | None:
        """Mark a running item to stop at its agent's next step (its work goes to a rescue branch, and it settles
        `cancelled`); None if it is not running."""
        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.RUNNING:
                raise TransitionRefused(f"item {item_id} is {item.status}")
            return item.model_copy(update={"cancel_requested": True})

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change)

    def retry(self, item: WorkItem) -> WorkItem | None:
        """A failed or cancelled item back in the queue for a new attempt, its failure counts reset, parked if
        its run is paused; pending on its node again unless the node has settled. None if it has not ended
        that way (or its run is over)."""
        node_key = Keys.node(item.node_id)

        def change(current: WorkItem, run: Run) -> WorkItem:
            if current.status not in (ItemStatus.FAILED, ItemStatus.CANCELLED):
                raise TransitionRefused(f"item {item.id} is {current.status}")
            if run.status not in LIVE_RUN_STATUSES:
                raise TransitionRefused(f"run {run.id} is {run.status}")
            return current.model_copy(update={**queued_fields(run), "failures": 0, "interruptions": 0,
                                              "cancel_requested": False, "settled_at": None})

        def also(pipe, _old, new: WorkItem) -> None:
            node = self.records.load(node_key, PlannerNode)
            if node.status not in SETTLED_NODE_STATUSES:
                pipe.sadd(Keys.node_pending(new.node_id), new.id)

        return self.records.transition_or_none(Keys.item(item.id), WorkItem, change, also=also,
                                               extra_watch=(node_key,), seen=(Keys.run(item.run_id), Run))

    def approve(self, item: WorkItem) -> WorkItem | None:
        """An item awaiting approval, queued (parked if its run is paused); None if it was not awaiting."""
        def change(current: WorkItem, run: Run) -> WorkItem:
            if current.status is not ItemStatus.AWAITING_APPROVAL or run.status not in LIVE_RUN_STATUSES:
                raise TransitionRefused(f"item {item.id} is {current.status}")
            return current.model_copy(update=queued_fields(run))

        return self.records.transition_or_none(Keys.item(item.id), WorkItem, change,
                                               seen=(Keys.run(item.run_id), Run))

    def unpark_item(self, item_id: str) -> WorkItem | None:
        """A parked item, unparked: whoever gets it (exactly one caller) dispatches it. None if not parked."""
        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.QUEUED or not item.parked:
                raise TransitionRefused(f"item {item_id} is not parked")
            return item.model_copy(update={"parked": False, "queued_at": now()})

        return self.records.transition_or_none(Keys.item(item_id), WorkItem, change)

    def unpark_node(self, node_id: str) -> PlannerNode | None:
        """A parked planner node, unparked: whoever gets it dispatches it. None if not parked."""
        def change(node: PlannerNode) -> PlannerNode:
            if node.status is not NodeStatus.PENDING or not node.parked:
                raise TransitionRefused(f"node {node_id} is not parked")
            return node.model_copy(update={"parked": False, "queued_at": now()})

        return self.records.transition_or_none(Keys.node(node_id), PlannerNode, change)

