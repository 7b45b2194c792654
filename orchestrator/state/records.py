"""Redis plumbing under Cadre's store: the connection, its errors, and atomic record transitions.

Records are pydantic models stored as JSON under the `cadre:` prefix. Every state transition is an
optimistic transaction (WATCH / MULTI): it reads the record, checks the transition is allowed, and
writes it back only if nobody changed it meanwhile, so two processes racing on one transition
cannot both win.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from orchestrator.config.secrets import redact_url
from orchestrator.state.models import Contract
from orchestrator.state.sentinel import is_sentinel_url, master_client

M = TypeVar("M", bound=Contract)
# A patient client rides out a Redis restart: about two minutes of retries with capped backoff.
PATIENT_RETRIES = 60
PATIENT_FIRST_PING_SECONDS = 30.0


class StoreUnavailable(RuntimeError):
    """Redis cannot be reached."""


class TransitionRefused(RuntimeError):
    """A state transition is not allowed from the record's current state."""


class UnknownRecord(KeyError):
    """No record with that id exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown record"


def connect(url: str, patient: bool = False, tls: dict | None = None, master_name: str = "cadre") -> redis.Redis:
    """A Redis client for `url` that has answered a PING; StoreUnavailable (one line) otherwise.

    A `patient` client (for long-running processes) retries every command through connection
    errors for about two minutes, so a Redis restart (or a Sentinel failover) pauses Cadre instead of
    failing it. `tls` holds redis-py's certificate options for a `rediss://` URL
    (`settings.redis.ssl_options()`). A `sentinel://` URL names Sentinels watching `master_name`.
    """
    options: dict = dict(decode_responses=True, socket_connect_timeout=3, socket_timeout=30, health_check_interval=30,
                         **(tls or {}))

    def client(**extra) -> redis.Redis:
        if is_sentinel_url(url):
            return master_client(url, master_name, **options, **extra)
        return redis.Redis.from_url(url, **options, **extra)

    # A patient process that starts while Sentinels are still agreeing on a new master waits for them too.
    deadline = time.monotonic() + (PATIENT_FIRST_PING_SECONDS if patient else 0)
    while True:
        try:
            client().ping()
            break
        except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
            if time.monotonic() >= deadline or isinstance(exc, ValueError):
                raise StoreUnavailable(f"Redis unreachable at {redact_url(url)}: {exc}") from None
            time.sleep(0.5)
    if patient:
        return client(retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), PATIENT_RETRIES),
                      retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    return client()


class JsonRecords:
    """Typed, atomic access to JSON records in one Redis database; every part of the store holds one."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def load(self, key: str, model: type[M], conn: redis.Redis | None = None) -> M:
        """The record at `key` (read through `conn`, e.g. a watching pipeline); UnknownRecord if absent."""
        raw = (conn or self.redis).get(key)
        if raw is None:
            raise UnknownRecord(f"no {model.__name__.lower()} at {key}")
        return model.model_validate_json(raw)

    def transition_or_none(self, key: str, model: type[M], change: Callable[[M], M], **options) -> M | None:
        """`transition`, or None when `change` refused it (TransitionRefused)."""
        try:
            return self.transition(key, model, change, **options)
        except TransitionRefused:
            return None

    def load_many(self, keys: list[str], model: type[M]) -> list[M]:
        """The records at `keys` in one MGET, in order; missing ones are skipped."""
        if not keys:
            return []
        return [model.model_validate_json(raw) for raw in self.redis.mget(keys) if raw is not None]

    def transition(self, key: str, model: type[M], change: Callable[..., M], extra_watch: tuple[str, ...] = (),
                   also: Callable[[redis.client.Pipeline, M, M], None] | None = None,
                   seen: tuple[str, type[Contract]] | None = None) -> M:
        """Apply `change` to the record at `key` atomically; `also` queues more writes in the same MULTI.

        With `seen` (a key and its model), that record is watched too and passed to `change` as its second
        argument: the change holds only if that record did not change meanwhile (a run's status, say)."""
        result: dict[str, M] = {}
        watched = (*extra_watch, seen[0]) if seen else extra_watch

        def attempt(pipe: redis.client.Pipeline) -> None:
            current = self.load(key, model, pipe)
            updated = change(current, self.load(seen[0], seen[1], pipe)) if seen else change(current)
            pipe.multi()
            pipe.set(key, updated.model_dump_json())
            if also is not None:
                also(pipe, current, updated)
            result["value"] = updated

        self.redis.transaction(attempt, key, *watched)
        return result["value"]
