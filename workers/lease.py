"""The heartbeat that keeps a running attempt's lease alive, and the fencing check before a push."""

from __future__ import annotations

import logging
import threading

from orchestrator.state.store import Store

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    """Refreshes an attempt's lease every third of its TTL while the attempt runs (tool commands included)."""

    def __init__(self, store: Store, item_id: str, attempt: int, lease_seconds: int):
        self.store, self.item_id, self.attempt, self.lease_seconds = store, item_id, attempt, lease_seconds
        self.held = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{item_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            if not self.store.items.refresh_lease(self.item_id, self.attempt, self.lease_seconds):
                self.held = False
                log.warning("item %s attempt %s lost its lease", self.item_id, self.attempt)
                return

    def still_holds(self) -> bool:
        """Fencing: whether this attempt still holds the lease, checked against Redis now.

        Once lost, a lease is never taken back: the attempt is stale for good.
        """
        self.held = self.held and self.store.items.refresh_lease(self.item_id, self.attempt, self.lease_seconds)
        return self.held

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
