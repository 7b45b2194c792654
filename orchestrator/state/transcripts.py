"""Agent transcripts in Redis, streamed as the agent runs: readable from any machine that reaches Redis,
also after the host that ran the agent died (up to what was streamed).

Each transcript is a Redis Stream of zlib-compressed JSON lines (base64, so any client can read them) (`cadre:transcript:<run>:<name>`);
each work item keeps the names of its transcripts. A transcript stops growing at a size cap (a last
`truncated` entry says so; the host's own file keeps everything) and expires after the retention.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Iterator

import redis

from orchestrator.state.keys import Keys

END_TYPES = ('"type": "end"',)


def _pack(line: str) -> str:
    return base64.b64encode(zlib.compress(line.encode("utf-8"))).decode("ascii")


class TranscriptStore:
    """Append and read transcripts; `max_bytes` caps one transcript's compressed size."""

    def __init__(self, client: redis.Redis, max_bytes: int, retention_seconds: int):
        self.redis, self.max_bytes, self.retention_seconds = client, max_bytes, retention_seconds

    def append(self, run_id: str, name: str, line: str, item_id: str | None = None) -> bool:
        """Add one JSON line to the transcript; False once it has reached its size cap."""
        key, size_key = Keys.transcript(run_id, name), Keys.transcript_size(run_id, name)
        data = _pack(line)
        size = self.redis.incrby(size_key, len(data))
        if size - len(data) >= self.max_bytes:
            return False
        if size > self.max_bytes:
            marker = '{"type": "truncated", "reason": "transcript size cap reached (CADRE_TRANSCRIPT_MAX_BYTES)"}'
            data = _pack(marker)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(key, {"z": data})
        for touched in (key, size_key):
            pipe.expire(touched, self.retention_seconds)
        if item_id is not None and size == len(data):  # its first line: list it on its item
            pipe.rpush(Keys.item_transcripts(item_id), name)
            pipe.expire(Keys.item_transcripts(item_id), self.retention_seconds)
        pipe.execute()
        return size <= self.max_bytes

    def names(self, item_id: str) -> list[str]:
        """The item's transcripts (attempts and conflict turns), in the order they started."""
        return list(dict.fromkeys(self.redis.lrange(Keys.item_transcripts(item_id), 0, -1)))

    def lines(self, run_id: str, name: str, follow: bool = False, block_ms: int = 1000,
              gone: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """The transcript's JSON lines, oldest first; with `follow`, waits for new ones until its `end` line,
        or until `gone()` says its agent is no longer running (its host died) and nothing new came."""
        key, last = Keys.transcript(run_id, name), "0-0"
        while True:
            batch = self.redis.xread({key: last}, count=500, block=block_ms if follow else None)
            entries = batch[0][1] if batch else []
            for entry_id, fields in entries:
                last = entry_id
                line = zlib.decompress(base64.b64decode(fields["z"])).decode("utf-8")
                yield line
                if follow and any(marker in line for marker in END_TYPES):
                    return
            if not entries and (not follow or gone()):
                return
