"""Cadre's state in Redis, as one object made of parts: runs, cycles, nodes, items, events, usage."""

from __future__ import annotations

import redis

from orchestrator.state.events import EventLog, UsageCounters
from orchestrator.state.items import ItemRecords
from orchestrator.state.nodes import NodeRecords
from orchestrator.state.records import JsonRecords, connect
from orchestrator.state.runs import CycleRecords, RunRecords
from orchestrator.state.steering import SteeringRecords
from orchestrator.state.transcripts import TranscriptStore


class Store:
    """Typed access to Cadre's records in one Redis database: `store.items.claim(...)`,
    `store.runs.get(...)`, `store.events.emit(...)`. `store.redis` is the client they share."""

    def __init__(self, client: redis.Redis, transcript_max_bytes: int = 5_000_000,
                 transcript_retention_seconds: int = 30 * 24 * 3600):
        self.redis = client
        records = JsonRecords(client)
        self.transcripts = TranscriptStore(client, transcript_max_bytes, transcript_retention_seconds)
        self.events = EventLog(client)
        self.usage = UsageCounters(client)
        self.runs = RunRecords(records, self.events)
        self.cycles = CycleRecords(records)
        self.nodes = NodeRecords(records)
        self.items = ItemRecords(records, self.nodes)
        self.steering = SteeringRecords(records)


_store: Store | None = None


def get_store(patient: bool = True) -> Store:
    """The process-wide store on `CADRE_REDIS_URL` (connected and pinged on first use).

    Long-running processes get a patient client (see `connect`); the CLI asks for an impatient one
    so that an unreachable Redis is reported at once. Only a patient store is kept: an impatient one
    (a service's start-up check, say) must never become the store its forked pool processes inherit.
    """
    global _store
    if _store is not None:
        return _store
    from orchestrator.config.settings import get_settings

    settings = get_settings()
    store = Store(connect(settings.redis.url, patient=patient, tls=settings.redis.ssl_options(),
                          master_name=settings.redis.master_name),
                  settings.transcript_max_bytes, int(settings.transcript_retention_days * 86400))
    if patient:
        _store = store
    return store
