"""Runs and their cycles in Redis: created, advanced cycle by cycle, judged, ended and expired."""

from __future__ import annotations

from orchestrator.state.events import EventLog
from orchestrator.state.keys import Keys
from orchestrator.state.models import (
    Cycle,
    CycleStatus,
    PlannerNode,
    Run,
    RunStatus,
    Verdict,
    now,
)
from orchestrator.state.records import JsonRecords, TransitionRefused, UnknownRecord

# How long an ended run's records stay readable (status, report, trace) before Redis drops them.
RUN_RETENTION_SECONDS = 30 * 24 * 3600


class RunRecords:
    """Runs: created with their first cycle, advanced to the next cycle once, ended once."""

    def __init__(self, records: JsonRecords, events: EventLog):
        self.records, self.events = records, events
        self.redis = records.redis

    def create(self, run: Run, cycle: Cycle, root: PlannerNode, repo_url: str | None = None) -> None:
        """Store a new run with its first cycle and root node, all or nothing.

        `repo_url` is the repository URL with its credentials, kept apart from the run record (which
        holds it redacted), so that no status, event or report carries them.
        """
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(Keys.run(run.id), run.model_dump_json())
        if repo_url and repo_url != run.repo:
            pipe.set(Keys.repo_url(run.id), repo_url)
        pipe.zadd(Keys.runs(), {run.id: run.created_at})
        pipe.sadd(Keys.active_runs(), run.id)
        pipe.set(Keys.cycle(run.id, cycle.number), cycle.model_dump_json())
        pipe.set(Keys.node(root.id), root.model_dump_json())
        pipe.rpush(Keys.run_nodes(run.id), root.id)
        pipe.execute()

    def get(self, run_id: str) -> Run:
        """The run `run_id`; UnknownRecord if there is none."""
        try:
            return self.records.load(Keys.run(run_id), Run)
        except UnknownRecord:
            raise UnknownRecord(f"unknown run id {run_id}") from None

    def repo_url(self, run: Run) -> str:
        """The URL git uses for the run's repository: with its credentials when it was given some."""
        return self.redis.get(Keys.repo_url(run.id)) or run.repo

    def all(self) -> list[Run]:
        """Every stored run (ended ones until their records expire)."""
        ids = list(self.redis.zrange(Keys.runs(), 0, -1))
        return self.records.load_many([Keys.run(i) for i in ids], Run)

    def active_ids(self) -> list[str]:
        """Ids of runs that have not ended."""
        return sorted(self.redis.smembers(Keys.active_runs()))

    def ids(self, newest_first: bool = True, limit: int = 50) -> list[str]:
        """Ids of stored runs, newest first by default."""
        if newest_first:
            return list(self.redis.zrevrange(Keys.runs(), 0, limit - 1))
        return list(self.redis.zrange(Keys.runs(), 0, limit - 1))

    def end(self, run_id: str, status: RunStatus, reason: str = "",
            retention_seconds: int | None = RUN_RETENTION_SECONDS) -> bool:
        """Move a running run to terminal `status`; False if it had already ended (first one wins)."""
        def change(run: Run) -> Run:
            if run.is_over:
                raise TransitionRefused(f"run {run_id} already {run.status}")
            return run.model_copy(update={"status": status, "reason": reason, "ended_at": now()})

        def also(pipe, _old, _new) -> None:
            pipe.srem(Keys.active_runs(), run_id)

        if self.records.transition_or_none(Keys.run(run_id), Run, change, also=also) is None:
            return False
        self.events.emit(run_id, "run_ended", status=status.value, reason=reason)
        if retention_seconds:
            self.expire(run_id, retention_seconds)
        return True

    def expire(self, run_id: str, seconds: int) -> None:
        """Give every key of an ended run a TTL so nothing grows forever."""
        run = self.get(run_id)
        keys = [Keys.run(run_id), Keys.usage(run_id), Keys.events(run_id), Keys.run_items(run_id),
                Keys.run_nodes(run_id), Keys.checks(run_id), Keys.repo_url(run_id), Keys.guidance(run_id)]
        for number in range(1, run.cycle + 1):
            keys += [Keys.cycle(run_id, number), Keys.cycle_items(run_id, number), Keys.cycle_nodes(run_id, number)]
        for node_id in self.redis.lrange(Keys.run_nodes(run_id), 0, -1):
            keys += [Keys.node(node_id), Keys.node_pending(node_id), Keys.node_items(node_id)]
        keys += [Keys.item(i) for i in self.redis.lrange(Keys.run_items(run_id), 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.expire(key, seconds)
        pipe.execute()

    def advance_cycle(self, run_id: str, from_cycle: int, cycle: Cycle, root: PlannerNode) -> bool:
        """Advance a running run from `from_cycle` to `cycle` once; False if someone already did, or the run is not
        running (paused, draining, ended)."""
        def change(run: Run) -> Run:
            if run.status is not RunStatus.RUNNING or run.cycle != from_cycle:  # paused: no new cycle starts
                raise TransitionRefused(f"run {run_id} is {run.status} at cycle {run.cycle}")
            return run.model_copy(update={"cycle": cycle.number})

        def also(pipe, _old, _new) -> None:
            pipe.set(Keys.cycle(run_id, cycle.number), cycle.model_dump_json())
            pipe.set(Keys.node(root.id), root.model_dump_json())
            pipe.rpush(Keys.run_nodes(run_id), root.id)

        return self.records.transition_or_none(Keys.run(run_id), Run, change, also=also) is not None


class CycleRecords:
    """Cycles: planning, then judged once, then closed with their verdict."""

    def __init__(self, records: JsonRecords):
        self.records = records
        self.redis = records.redis

    def get(self, run_id: str, number: int) -> Cycle:
        """Cycle `number` of the run; UnknownRecord if there is none."""
        return self.records.load(Keys.cycle(run_id, number), Cycle)

    def begin_judging(self, run_id: str, number: int) -> bool:
        """Mark a cycle `judging` once; False if it already was (so the judge is enqueued once), or if the run is
        paused or draining (its tick or its resume closes the cycle later)."""
        def change(cycle: Cycle, run: Run) -> Cycle:
            if cycle.status is not CycleStatus.PLANNING or run.is_paused:
                raise TransitionRefused(f"cycle {number} is {cycle.status}, its run {run.status}")
            return cycle.model_copy(update={"status": CycleStatus.JUDGING, "judging_at": now()})

        return self.records.transition_or_none(Keys.cycle(run_id, number), Cycle, change,
                                               seen=(Keys.run(run_id), Run)) is not None

    def close(self, run_id: str, number: int, verdict: Verdict) -> bool:
        """Record the verdict and close a judging cycle once; False if it was already closed."""
        def change(cycle: Cycle) -> Cycle:
            if cycle.status is CycleStatus.CLOSED:
                raise TransitionRefused(f"cycle {number} already closed")
            return cycle.model_copy(update={"status": CycleStatus.CLOSED, "verdict": verdict, "closed_at": now()})

        return self.records.transition_or_none(Keys.cycle(run_id, number), Cycle, change) is not None

    def item_ids(self, run_id: str, number: int) -> list[str]:
        """Ids of the items created in cycle `number`, in creation order."""
        return list(self.redis.lrange(Keys.cycle_items(run_id, number), 0, -1))
