"""Each run's event stream and usage counters in Redis."""

from __future__ import annotations

import json

import redis

from orchestrator.config.secrets import scrub
from orchestrator.state.keys import Keys
from orchestrator.state.metrics import count_event, count_usage
from orchestrator.state.models import Event

EVENT_STREAM_MAXLEN = 100_000


class EventLog:
    """One Redis Stream per run holding every state change, secret values masked."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def emit(self, run_id: str, type_: str, **data) -> None:
        """Append an event to the run's stream (secret values masked)."""
        event = Event(type=type_, run_id=run_id, data=data)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(Keys.events(run_id), {"event": scrub(event.model_dump_json())},
                  maxlen=EVENT_STREAM_MAXLEN, approximate=True)
        count_event(pipe, type_)
        pipe.execute()

    def read(self, run_id: str, count: int = 10_000) -> list[Event]:
        """The run's events, oldest first."""
        entries = self.redis.xrange(Keys.events(run_id), count=count)
        return [Event.model_validate(json.loads(fields["event"])) for _id, fields in entries]


class UsageCounters:
    """Tokens and cost per run, attributed to role, cycle, planner node and work item."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, run_id: str, role: str, tokens: int, cost_usd: float, scopes: dict[str, str] | None = None,
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
        count_usage(pipe, role, tokens, cost_usd)
        pipe.execute()

    def spent(self, run_id: str) -> dict[str, float]:
        """The run's total `tokens` and `cost_usd` only (two fields, not the whole hash: it is read before every
        model call, and the hash grows with every item)."""
        tokens, cost = self.redis.hmget(Keys.usage(run_id), "tokens", "cost_usd")
        return {"tokens": float(tokens or 0), "cost_usd": float(cost or 0)}

    def totals(self, run_id: str) -> dict[str, float]:
        """The run's usage counters: `tokens`, `cost_usd`, `calls` and `<role>:tokens` / `<role>:cost_usd`."""
        return {k: float(v) for k, v in self.redis.hgetall(Keys.usage(run_id)).items()}
