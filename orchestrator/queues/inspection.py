"""What is waiting in a queue: the arguments of the task messages in Redis (kombu's Redis transport).

A queue is one Redis list per priority step (`work`, `work\\x06\\x163`, ...); each entry is a message whose
base64 body holds `[args, kwargs, embed]`. Used to tell a lost message from one that is only waiting.
"""

from __future__ import annotations

import base64
import json

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel


def priority_lists(queue: str) -> list[str]:
    """The Redis lists holding queue `queue`'s messages, one per priority step."""
    return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


def waiting_args(client: redis.Redis, queue: str, task: str) -> set[tuple]:
    """The argument tuples of every `task` message waiting in `queue` (not yet delivered to a worker)."""
    found = set()
    for name in priority_lists(queue):
        for raw in client.lrange(name, 0, -1):
            try:
                message = json.loads(raw)
                if message["headers"]["task"] != task:
                    continue
                args = json.loads(base64.b64decode(message["body"]))[0]
            except (ValueError, KeyError, TypeError, IndexError):
                continue
            found.add(tuple(args))
    return found
