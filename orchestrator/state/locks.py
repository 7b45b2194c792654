"""Locks held for as long as work runs: a redis-py `Lock` (token-checked extend, atomic release) with a
thread that extends it every third of its TTL, and a way to make a write conditional on still holding it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)


class LockLost(RuntimeError):
    """The lock lapsed or was taken over: whatever its holder was doing must stop without side effects."""


class KeptLock:
    """One named lock in Redis, kept alive by a background thread while held; `held` is False for good once
    an extend fails (the holder stalled past the TTL and someone else may hold it now)."""

    def __init__(self, client: redis.Redis, name: str, seconds: float):
        self.client, self.name, self.seconds = client, name, seconds
        self.lock = client.lock(name, timeout=seconds, blocking=False, thread_local=False)
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (never waits); start keeping it alive."""
        if not self.lock.acquire(blocking=False):
            return False
        self._thread = threading.Thread(target=self._keep, name=f"keep-{self.name}", daemon=True)
        self._thread.start()
        return True

    def _keep(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.lock.extend(self.seconds, replace_ttl=True)
            except (LockError, redis.RedisError) as exc:
                log.warning("lock %s lost: %s", self.name, exc)
                self._lost.set()
                return

    @property
    def held(self) -> bool:
        """Whether this holder still holds the lock, checked against Redis now."""
        return not self._lost.is_set() and self.lock.owned()

    def check(self) -> None:
        """LockLost unless the lock is still held (call before every side effect)."""
        if not self.held:
            self._lost.set()
            raise LockLost(f"lock {self.name} is no longer held")

    def write_if_held(self, writes: Callable[[redis.client.Pipeline], None]) -> None:
        """Queue `writes` in one MULTI that runs only if the lock is still ours when it executes (WATCH)."""
        token = self.lock.local.token
        token = token.decode() if isinstance(token, bytes) else token

        def guarded(pipe: redis.client.Pipeline) -> None:
            if pipe.get(self.name) != token:
                self._lost.set()
                raise LockLost(f"lock {self.name} is no longer held")
            pipe.multi()
            writes(pipe)

        self.client.transaction(guarded, self.name)

    def release(self) -> None:
        """Stop keeping the lock and release it if it is still ours (atomically: never someone else's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.lock.release()
        except LockError:
            pass
