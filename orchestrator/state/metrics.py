"""Cadre's own running totals in Redis, for Prometheus (`cadre metrics`): counters fed by events and
usage, and a histogram of attempt durations. They live outside any run, so they never go down when a
run's records expire."""

from __future__ import annotations

import redis

from orchestrator.state.keys import Keys

# Event type → counter name (`cadre_<name>_total`).
EVENT_COUNTERS = {"pushed": "landings", "rescued": "rescues", "conflict": "conflicts", "item_requeued": "requeues",
                  "redispatched": "redispatches", "delivery_dropped": "dropped_deliveries", "refused": "refusals",
                  "stalled": "stalls"}
ATTEMPT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


def count_event(pipe: redis.client.Pipeline, event_type: str) -> None:
    """Count an event in its counter, if it has one."""
    if event_type in EVENT_COUNTERS:
        pipe.hincrby(Keys.metrics(), f"count:{EVENT_COUNTERS[event_type]}", 1)


def count_usage(pipe: redis.client.Pipeline, role: str, tokens: int, cost_usd: float) -> None:
    """Add one model call's tokens and cost to the role's totals."""
    pipe.hincrby(Keys.metrics(), f"tokens:{role}", tokens)
    pipe.hincrbyfloat(Keys.metrics(), f"cost_usd:{role}", cost_usd)


def observe_attempt(pipe: redis.client.Pipeline, seconds: float, outcome: str) -> None:
    """Put one attempt's duration in its bucket (the first upper bound it fits under, or +Inf)."""
    bound = next((f"{b:g}" for b in ATTEMPT_BUCKETS if seconds <= b), "+Inf")
    pipe.hincrby(Keys.metrics(), f"attempt:{outcome}:le:{bound}", 1)
    pipe.hincrbyfloat(Keys.metrics(), f"attempt:{outcome}:sum", seconds)


def totals(client: redis.Redis) -> dict[str, float]:
    """Every running total, by field name."""
    return {field: float(value) for field, value in client.hgetall(Keys.metrics()).items()}
