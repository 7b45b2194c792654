"""Faults injected on purpose by tests and `bench/fault_injection.py`: never imported by production code."""

from __future__ import annotations

import base64
import json

import redis

from orchestrator.queues.inspection import priority_lists


def drop_waiting(client: redis.Redis, queue: str, task: str, first_arg: str) -> int:
    """Delete the waiting `task` messages of `queue` whose first argument is `first_arg` (a message lost
    by the broker); returns how many were deleted."""
    deleted = 0
    for name in priority_lists(queue):
        for raw in client.lrange(name, 0, -1):
            message = json.loads(raw)
            if message["headers"]["task"] == task and json.loads(base64.b64decode(message["body"]))[0][:1] == [first_arg]:
                deleted += client.lrem(name, 1, raw)
    return deleted
