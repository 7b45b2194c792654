"""Cadre's state in Redis: runs, cycles, planner nodes, work items, leases and event streams."""

from __future__ import annotations

import json
import logging


from orchestrator.item_records import ItemRecords
from orchestrator.models import (
    TERMINAL_RUN_STATUSES,
    Cycle,
    CycleStatus,
    Event,
    PlannerNode,
    Run,
    RunStatus,
    Verdict,
    now,
)
from orchestrator.secrets_filter import scrub
from orchestrator.redis_records import (  # noqa: F401  (re-exported: the store's public errors and helpers)
    Keys,
    StoreUnavailable,
    TransitionRefused,
    UnknownRecord,
    connect,
    redact_url,
)

log = logging.getLogger(__name__)
EVENT_STREAM_MAXLEN = 100_000


class Store(ItemRecords):
    """Typed access to Cadre's records in one Redis database."""

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

        if self._transition_or_none(Keys.run(run_id), Run, change, also=also) is None:
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
        keys += [Keys.cycle_nodes(run_id, n) for n in range(1, run.cycle + 1)]
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

        return self._transition_or_none(Keys.run(run_id), Run, change, also=also) is not None

    # -- cycles ----------------------------------------------------------------------------
    def cycle(self, run_id: str, number: int) -> Cycle:
        return self._load(Keys.cycle(run_id, number), Cycle)

    def begin_judging(self, run_id: str, number: int) -> bool:
        """Mark a cycle `judging` once; False if it already was (so the judge is enqueued once)."""
        def change(cycle: Cycle) -> Cycle:
            if cycle.status is not CycleStatus.PLANNING:
                raise TransitionRefused(f"cycle {number} is {cycle.status}")
            return cycle.model_copy(update={"status": CycleStatus.JUDGING})

        return self._transition_or_none(Keys.cycle(run_id, number), Cycle, change) is not None

    def close_cycle(self, run_id: str, number: int, verdict: Verdict) -> bool:
        """Record the verdict and close a judging cycle once; False if it was already closed."""
        def change(cycle: Cycle) -> Cycle:
            if cycle.status is CycleStatus.CLOSED:
                raise TransitionRefused(f"cycle {number} already closed")
            return cycle.model_copy(update={"status": CycleStatus.CLOSED, "verdict": verdict, "closed_at": now()})

        return self._transition_or_none(Keys.cycle(run_id, number), Cycle, change) is not None

    def cycle_item_ids(self, run_id: str, number: int) -> list[str]:
        return list(self.redis.lrange(Keys.cycle_items(run_id, number), 0, -1))

    # -- usage and events ------------------------------------------------------------------
    def add_usage(self, run_id: str, role: str, tokens: int, cost_usd: float, scopes: dict[str, str] | None = None,
                  reported: bool = True) -> None:
        """Add one model call's tokens and cost to the run's totals: overall, per role and per scope
        (`{"cycle": "2", "node": "node-…", "item": "item-…"}`); unreported usage is counted as such."""
        pipe = self.redis.pipeline(transaction=True)
        key = Keys.usage(run_id)
        prefixes = ["", f"{role}:"] + [f"{kind}:{value}:" for kind, value in (scopes or {}).items()]
        for prefix in prefixes:
            pipe.hincrby(key, f"{prefix}tokens", tokens)
            pipe.hincrbyfloat(key, f"{prefix}cost_usd", cost_usd)
        pipe.hincrby(key, "calls" if reported else "unreported_calls", 1)
        pipe.execute()

    def usage(self, run_id: str) -> dict[str, float]:
        """The run's usage counters: `tokens`, `cost_usd`, `calls` and `<role>:tokens` / `<role>:cost_usd`."""
        return {k: float(v) for k, v in self.redis.hgetall(Keys.usage(run_id)).items()}

    def emit(self, run_id: str, type_: str, **data) -> None:
        """Append an event to the run's stream (secret values masked)."""
        event = Event(type=type_, run_id=run_id, data=data)
        self.redis.xadd(Keys.events(run_id), {"event": scrub(event.model_dump_json())},
                        maxlen=EVENT_STREAM_MAXLEN, approximate=True)

    def events(self, run_id: str, count: int = 10_000) -> list[Event]:
        """The run's events, oldest first."""
        entries = self.redis.xrange(Keys.events(run_id), count=count)
        return [Event.model_validate(json.loads(fields["event"])) for _id, fields in entries]


_store: Store | None = None


def get_store(patient: bool = True) -> Store:
    """The process-wide store on `CADRE_REDIS_URL` (connected and pinged on first use).

    Long-running processes get a patient client (see `connect`); the CLI asks for an impatient one
    so that an unreachable Redis is reported at once.
    """
    global _store
    if _store is None:
        from orchestrator.settings import get_settings

        _store = Store(connect(get_settings().redis_url, patient=patient))
    return _store
