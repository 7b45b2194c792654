"""Cadre's state in Redis: runs, cycles, planner nodes, work items, leases and event streams.

Records are pydantic models stored as JSON under the `cadre:` prefix. Every state transition is an
optimistic transaction (WATCH / MULTI): it reads the record, checks the transition is allowed, and
writes it back only if nobody changed it meanwhile, so two processes racing on one transition
cannot both win.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

import redis

from orchestrator.models import (
    SETTLED_ITEM_STATUSES,
    TERMINAL_RUN_STATUSES,
    Contract,
    Cycle,
    CycleStatus,
    Event,
    Handoff,
    ItemStatus,
    NodeStatus,
    PlannerNode,
    Run,
    RunStatus,
    Verdict,
    WorkItem,
    now,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Contract)
EVENT_STREAM_MAXLEN = 100_000


class StoreUnavailable(RuntimeError):
    """Redis cannot be reached."""


class TransitionRefused(RuntimeError):
    """A state transition is not allowed from the record's current state."""


class UnknownRecord(KeyError):
    """No record with that id exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown record"


def connect(url: str) -> redis.Redis:
    """A Redis client for `url` that has answered a PING; StoreUnavailable (one line) otherwise."""
    client = redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=3, socket_timeout=30, health_check_interval=30
    )
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise StoreUnavailable(f"Redis unreachable at {redact_url(url)}: {exc}") from None
    return client


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class Keys:
    """Every Redis key Cadre uses, in one place."""

    @staticmethod
    def run(run_id: str) -> str:
        return f"cadre:run:{run_id}"

    @staticmethod
    def runs() -> str:
        return "cadre:runs"

    @staticmethod
    def active_runs() -> str:
        return "cadre:runs:active"

    @staticmethod
    def usage(run_id: str) -> str:
        return f"cadre:run:{run_id}:usage"

    @staticmethod
    def events(run_id: str) -> str:
        return f"cadre:run:{run_id}:events"

    @staticmethod
    def run_items(run_id: str) -> str:
        return f"cadre:run:{run_id}:items"

    @staticmethod
    def run_nodes(run_id: str) -> str:
        return f"cadre:run:{run_id}:nodes"

    @staticmethod
    def cycle(run_id: str, number: int) -> str:
        return f"cadre:cycle:{run_id}:{number}"

    @staticmethod
    def cycle_items(run_id: str, number: int) -> str:
        return f"cadre:cycle:{run_id}:{number}:items"

    @staticmethod
    def node(node_id: str) -> str:
        return f"cadre:node:{node_id}"

    @staticmethod
    def node_pending(node_id: str) -> str:
        return f"cadre:node:{node_id}:pending"

    @staticmethod
    def node_items(node_id: str) -> str:
        return f"cadre:node:{node_id}:items"

    @staticmethod
    def item(item_id: str) -> str:
        return f"cadre:item:{item_id}"

    @staticmethod
    def lease(item_id: str) -> str:
        return f"cadre:lease:{item_id}"


class Store:
    """Typed access to Cadre's records in one Redis database."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    # -- generic record access -------------------------------------------------------------
    def _load(self, key: str, model: type[M], conn: redis.Redis | None = None) -> M:
        raw = (conn or self.redis).get(key)
        if raw is None:
            raise UnknownRecord(f"no {model.__name__.lower()} at {key}")
        return model.model_validate_json(raw)

    def _transition(self, key: str, model: type[M], change: Callable[[M], M], extra_watch: tuple[str, ...] = (),
                    also: Callable[[redis.client.Pipeline, M, M], None] | None = None) -> M:
        """Apply `change` to the record at `key` atomically; `also` queues more writes in the same MULTI."""
        result: dict[str, M] = {}

        def attempt(pipe: redis.client.Pipeline) -> None:
            current = self._load(key, model, pipe)
            updated = change(current)
            pipe.multi()
            pipe.set(key, updated.model_dump_json())
            if also is not None:
                also(pipe, current, updated)
            result["value"] = updated

        self.redis.transaction(attempt, key, *extra_watch)
        return result["value"]

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, run: Run, cycle: Cycle, root: PlannerNode) -> None:
        """Store a new run with its first cycle and root node, all or nothing."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(Keys.run(run.id), run.model_dump_json())
        pipe.zadd(Keys.runs(), {run.id: run.created_at})
        pipe.sadd(Keys.active_runs(), run.id)
        pipe.set(Keys.cycle(run.id, cycle.number), cycle.model_dump_json())
        pipe.set(Keys.node(root.id), root.model_dump_json())
        pipe.rpush(Keys.run_nodes(run.id), root.id)
        pipe.execute()

    def run(self, run_id: str) -> Run:
        """The run `run_id`; UnknownRecord if there is none."""
        try:
            return self._load(Keys.run(run_id), Run)
        except UnknownRecord:
            raise UnknownRecord(f"unknown run id {run_id}") from None

    def active_run_ids(self) -> list[str]:
        """Ids of runs that have not ended."""
        return sorted(self.redis.smembers(Keys.active_runs()))

    def run_ids(self, newest_first: bool = True, limit: int = 50) -> list[str]:
        """Ids of stored runs, newest first by default."""
        if newest_first:
            return list(self.redis.zrevrange(Keys.runs(), 0, limit - 1))
        return list(self.redis.zrange(Keys.runs(), 0, limit - 1))

    def end_run(self, run_id: str, status: RunStatus, reason: str = "", retention_seconds: int | None = None) -> bool:
        """Move a running run to terminal `status`; False if it had already ended (first one wins)."""
        def change(run: Run) -> Run:
            if run.status in TERMINAL_RUN_STATUSES:
                raise TransitionRefused(f"run {run_id} already {run.status}")
            return run.model_copy(update={"status": status, "reason": reason, "ended_at": now()})

        def also(pipe, _old, _new) -> None:
            pipe.srem(Keys.active_runs(), run_id)

        try:
            self._transition(Keys.run(run_id), Run, change, also=also)
        except TransitionRefused:
            return False
        self.emit(run_id, "run_ended", status=status.value, reason=reason)
        if retention_seconds:
            self.expire_run(run_id, retention_seconds)
        return True

    def expire_run(self, run_id: str, seconds: int) -> None:
        """Give every key of an ended run a TTL so nothing grows forever."""
        run = self.run(run_id)
        keys = [Keys.run(run_id), Keys.usage(run_id), Keys.events(run_id), Keys.run_items(run_id), Keys.run_nodes(run_id)]
        keys += [Keys.cycle(run_id, n) for n in range(1, run.cycle + 1)]
        keys += [Keys.cycle_items(run_id, n) for n in range(1, run.cycle + 1)]
        for node_id in self.redis.lrange(Keys.run_nodes(run_id), 0, -1):
            keys += [Keys.node(node_id), Keys.node_pending(node_id), Keys.node_items(node_id)]
        keys += [Keys.item(i) for i in self.redis.lrange(Keys.run_items(run_id), 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.expire(key, seconds)
        pipe.execute()

    def start_next_cycle(self, run_id: str, from_cycle: int, cycle: Cycle, root: PlannerNode) -> bool:
        """Advance a running run from `from_cycle` to `cycle` once; False if someone already did."""
        def change(run: Run) -> Run:
            if run.status is not RunStatus.RUNNING or run.cycle != from_cycle:
                raise TransitionRefused(f"run {run_id} is not at cycle {from_cycle}")
            return run.model_copy(update={"cycle": cycle.number})

        def also(pipe, _old, _new) -> None:
            pipe.set(Keys.cycle(run_id, cycle.number), cycle.model_dump_json())
            pipe.set(Keys.node(root.id), root.model_dump_json())
            pipe.rpush(Keys.run_nodes(run_id), root.id)

        try:
            self._transition(Keys.run(run_id), Run, change, also=also)
        except TransitionRefused:
            return False
        return True

    # -- cycles ----------------------------------------------------------------------------
    def cycle(self, run_id: str, number: int) -> Cycle:
        return self._load(Keys.cycle(run_id, number), Cycle)

    def begin_judging(self, run_id: str, number: int) -> bool:
        """Mark a cycle `judging` once; False if it already was (so the judge is enqueued once)."""
        def change(cycle: Cycle) -> Cycle:
            if cycle.status is not CycleStatus.PLANNING:
                raise TransitionRefused(f"cycle {number} is {cycle.status}")
            return cycle.model_copy(update={"status": CycleStatus.JUDGING})

        try:
            self._transition(Keys.cycle(run_id, number), Cycle, change)
        except TransitionRefused:
            return False
        return True

    def close_cycle(self, run_id: str, number: int, verdict: Verdict) -> bool:
        """Record the verdict and close a judging cycle once; False if it was already closed."""
        def change(cycle: Cycle) -> Cycle:
            if cycle.status is CycleStatus.CLOSED:
                raise TransitionRefused(f"cycle {number} already closed")
            return cycle.model_copy(update={"status": CycleStatus.CLOSED, "verdict": verdict, "closed_at": now()})

        try:
            self._transition(Keys.cycle(run_id, number), Cycle, change)
        except TransitionRefused:
            return False
        return True

    def cycle_item_ids(self, run_id: str, number: int) -> list[str]:
        return list(self.redis.lrange(Keys.cycle_items(run_id, number), 0, -1))

    # -- planner nodes ---------------------------------------------------------------------
    def node(self, node_id: str) -> PlannerNode:
        return self._load(Keys.node(node_id), PlannerNode)

    def start_node(self, node_id: str) -> PlannerNode | None:
        """Move a pending node to `planning`; None if it is not pending (a duplicate delivery)."""
        def change(node: PlannerNode) -> PlannerNode:
            if node.status is not NodeStatus.PENDING:
                raise TransitionRefused(f"node {node_id} is {node.status}")
            return node.model_copy(update={"status": NodeStatus.PLANNING, "started_at": now()})

        try:
            return self._transition(Keys.node(node_id), PlannerNode, change)
        except TransitionRefused:
            return None

    def finish_planning(self, node_id: str, summary: str, error: str = "") -> bool:
        """The node's agent has ended (with `error` if it failed): it now waits for its pending children.

        False if the node was not planning (someone else already finished it).
        """
        def change(node: PlannerNode) -> PlannerNode:
            if node.status is not NodeStatus.PLANNING:
                raise TransitionRefused(f"node {node_id} is {node.status}")
            return node.model_copy(update={"status": NodeStatus.WAITING, "summary": summary, "error": error})

        try:
            self._transition(Keys.node(node_id), PlannerNode, change)
        except TransitionRefused:
            return False
        return True

    def settle_node_if_complete(self, node_id: str) -> bool:
        """Settle a waiting node whose pending set is empty; True exactly once, for the caller who did it."""
        pending_key = Keys.node_pending(node_id)

        def change(node: PlannerNode) -> PlannerNode:
            if node.status is not NodeStatus.WAITING or self.redis.scard(pending_key) > 0:
                raise TransitionRefused(f"node {node_id} not complete")
            return node.model_copy(update={"status": NodeStatus.FAILED if node.error else NodeStatus.DONE})

        try:
            self._transition(Keys.node(node_id), PlannerNode, change, extra_watch=(pending_key,))
        except TransitionRefused:
            return False
        return True

    def node_item_ids(self, node_id: str) -> list[str]:
        return list(self.redis.lrange(Keys.node_items(node_id), 0, -1))

    # -- work items ------------------------------------------------------------------------
    def add_item(self, item: WorkItem, max_per_cycle: int) -> bool:
        """Record a new pending item on its node and cycle; False if the cycle is full."""
        cycle_key = Keys.cycle_items(item.run_id, item.cycle)

        def attempt(pipe: redis.client.Pipeline) -> bool:
            if pipe.llen(cycle_key) >= max_per_cycle:
                return False
            pipe.multi()
            pipe.set(Keys.item(item.id), item.model_dump_json())
            pipe.sadd(Keys.node_pending(item.node_id), item.id)
            pipe.rpush(Keys.node_items(item.node_id), item.id)
            pipe.rpush(cycle_key, item.id)
            pipe.rpush(Keys.run_items(item.run_id), item.id)
            return True

        return self.redis.transaction(attempt, cycle_key, value_from_callable=True)

    def item(self, item_id: str) -> WorkItem:
        try:
            return self._load(Keys.item(item_id), WorkItem)
        except UnknownRecord:
            raise UnknownRecord(f"unknown work item {item_id}") from None

    def items(self, item_ids: list[str]) -> list[WorkItem]:
        """Load many items in one round trip (missing ones are skipped)."""
        if not item_ids:
            return []
        raws = self.redis.mget([Keys.item(i) for i in item_ids])
        return [WorkItem.model_validate_json(raw) for raw in raws if raw is not None]

    def run_item_ids(self, run_id: str) -> list[str]:
        return list(self.redis.lrange(Keys.run_items(run_id), 0, -1))

    def claim_item(self, item_id: str, lease_seconds: int) -> WorkItem | None:
        """Take a pending item: `running`, next attempt number, lease set. None if not pending."""
        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.PENDING:
                raise TransitionRefused(f"item {item_id} is {item.status}")
            return item.model_copy(update={"status": ItemStatus.RUNNING, "attempt": item.attempt + 1,
                                           "started_at": now()})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.set(Keys.lease(item_id), new.attempt, ex=lease_seconds)

        try:
            return self._transition(Keys.item(item_id), WorkItem, change, also=also)
        except TransitionRefused:
            return None

    def refresh_lease(self, item_id: str, attempt: int, lease_seconds: int) -> bool:
        """Extend the lease if `attempt` still holds it; False if the lease is gone or taken."""
        key = Keys.lease(item_id)
        held = self.redis.get(key)
        if held is None or int(held) != attempt:
            return False
        return bool(self.redis.set(key, attempt, ex=lease_seconds, xx=True))

    def settle_item(self, item_id: str, attempt: int, status: ItemStatus, handoff: Handoff) -> WorkItem | None:
        """Settle a running attempt with its handoff and drop it from its node's pending set, atomically.

        None if the item is not running `attempt` (already settled or taken over): nothing is written.
        """
        assert status in SETTLED_ITEM_STATUSES

        def change(item: WorkItem) -> WorkItem:
            if item.status is not ItemStatus.RUNNING or item.attempt != attempt:
                raise TransitionRefused(f"item {item_id} is {item.status} at attempt {item.attempt}")
            return item.model_copy(update={"status": status, "handoff": handoff, "settled_at": now()})

        def also(pipe, _old, new: WorkItem) -> None:
            pipe.srem(Keys.node_pending(new.node_id), item_id)
            pipe.delete(Keys.lease(item_id))

        try:
            return self._transition(Keys.item(item_id), WorkItem, change, also=also)
        except TransitionRefused:
            return None

    # -- usage and events ------------------------------------------------------------------
    def add_usage(self, run_id: str, role: str, tokens: int, cost_usd: float) -> None:
        """Add one model call's tokens and cost to the run's totals (overall and per role)."""
        pipe = self.redis.pipeline(transaction=True)
        key = Keys.usage(run_id)
        pipe.hincrby(key, "tokens", tokens)
        pipe.hincrbyfloat(key, "cost_usd", cost_usd)
        pipe.hincrby(key, f"{role}:tokens", tokens)
        pipe.hincrbyfloat(key, f"{role}:cost_usd", cost_usd)
        pipe.hincrby(key, "calls", 1)
        pipe.execute()

    def usage(self, run_id: str) -> dict[str, float]:
        """The run's usage counters: `tokens`, `cost_usd`, `calls` and `<role>:tokens` / `<role>:cost_usd`."""
        return {k: float(v) for k, v in self.redis.hgetall(Keys.usage(run_id)).items()}

    def emit(self, run_id: str, type_: str, **data) -> None:
        """Append an event to the run's stream."""
        event = Event(type=type_, run_id=run_id, data=data)
        self.redis.xadd(Keys.events(run_id), {"event": event.model_dump_json()},
                        maxlen=EVENT_STREAM_MAXLEN, approximate=True)

    def events(self, run_id: str, count: int = 10_000) -> list[Event]:
        """The run's events, oldest first."""
        entries = self.redis.xrange(Keys.events(run_id), count=count)
        return [Event.model_validate(json.loads(fields["event"])) for _id, fields in entries]


_store: Store | None = None


def get_store() -> Store:
    """The process-wide store on `CADRE_REDIS_URL` (connected and pinged on first use)."""
    global _store
    if _store is None:
        from orchestrator.settings import get_settings

        _store = Store(connect(get_settings().redis_url))
    return _store
