"""Leases under races: a zombie attempt's heartbeat never takes its successor's lease."""

from __future__ import annotations

import threading

import pytest

from orchestrator.state.keys import Keys

pytestmark = pytest.mark.integration


def test_a_zombie_heartbeat_never_overwrites_its_successors_lease(store):
    """Attempt 1 (a zombie) keeps refreshing while, again and again, its lease lapses and attempt 2 claims
    the item. A refresh is a compare-and-extend: it may only extend a lease that is its own."""
    key = Keys.lease("item-zombie")
    stop = threading.Event()

    def zombie() -> None:
        while not stop.is_set():
            store.items.refresh_lease("item-zombie", 1, 60)

    threads = [threading.Thread(target=zombie) for _ in range(3)]
    for thread in threads:
        thread.start()
    taken_over = 0
    try:
        for _ in range(3000):
            store.redis.set(key, 1, ex=60)  # the zombie's lease...
            store.redis.set(key, 2, ex=60)  # ...lapsed, and attempt 2 claimed the item
            for _read in range(3):
                taken_over += store.redis.get(key) != "2"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert taken_over == 0, f"the zombie overwrote its successor's lease {taken_over} times"
