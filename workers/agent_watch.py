"""Watching running agent programs: one thread per worker process, however many slots it has.

An `AgentWatch` per program says when to stop it: this worker is shutting down, an operator cancelled its
item (`cadre cancel`), or it stalled (neither output nor a change in its worktree for `stall_seconds`).
Every second the process's one watcher thread asks Redis about all its running items at once (one MGET,
only their cancel flags read) and looks at each program's output and worktree every few seconds, so a
worker with hundreds of light slots costs Redis one command a second, not one per slot.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from orchestrator.queues.shutdown import shutdown_requested
from orchestrator.state.store import Store
from orchestrator.untrusted.fingerprint import worktree_fingerprint

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 1.0  # how soon a shutdown or a cancel stops an agent program
STALL_CHECK_SECONDS = 5.0  # how often its output and worktree are looked at for signs of life


class AgentWatch:
    """Watches one running agent program: `stop` is set once it should stop (`stalled` then says why if it
    stalled). A context manager: watched from entry to exit."""

    def __init__(self, store: Store, item_id: str, worktree: Path, output_path: Path, stall_seconds: float):
        self.store, self.item_id, self.worktree, self.output_path = store, item_id, worktree, output_path
        self.stall_seconds = stall_seconds
        self.stop, self.stalled = threading.Event(), ""
        self._last: tuple[int, str] | None = None
        self._changed_at = self._checked_at = time.monotonic()

    def _activity(self) -> tuple[int, str]:
        size = self.output_path.stat().st_size if self.output_path.exists() else 0
        return size, worktree_fingerprint(self.worktree)

    def check_stall(self, now: float) -> None:
        """Look for signs of life if it is time to; stop a program that has shown none for `stall_seconds`."""
        if self._last is None:
            self._last, self._changed_at, self._checked_at = self._activity(), now, now
            return
        if now - self._checked_at < min(STALL_CHECK_SECONDS, self.stall_seconds / 4):
            return
        activity, self._checked_at = self._activity(), now
        if activity != self._last:
            self._last, self._changed_at = activity, now
        elif now - self._changed_at >= self.stall_seconds:
            self.stalled = f"no output and no change in its worktree for {now - self._changed_at:.0f} s"
            self.stop.set()

    def __enter__(self) -> AgentWatch:
        self.check_stall(time.monotonic())
        _WATCHER.add(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _WATCHER.remove(self)


class _Watcher:
    """The process's one watcher thread, started with its first watch."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watches: set[AgentWatch] = set()
        self._thread: threading.Thread | None = None

    def add(self, watch: AgentWatch) -> None:
        with self._lock:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cadre-agent-watch", daemon=True)
                self._thread.start()

    def remove(self, watch: AgentWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            time.sleep(STOP_POLL_SECONDS)
            with self._lock:
                watches = [w for w in self._watches if not w.stop.is_set()]
            try:
                self._look_at(watches)
            except Exception:  # a Redis blip, say: the programs run on; the next round asks again
                log.warning("agent watch: round skipped", exc_info=True)

    @staticmethod
    def _look_at(watches: list[AgentWatch]) -> None:
        if not watches:
            return
        if shutdown_requested():
            for watch in watches:
                watch.stop.set()
            return
        by_store: dict[int, list[AgentWatch]] = {}
        for watch in watches:
            by_store.setdefault(id(watch.store), []).append(watch)
        for group in by_store.values():
            cancelled = group[0].store.items.cancels_requested([w.item_id for w in group])
            for watch in group:
                if watch.item_id in cancelled:
                    watch.stop.set()
        now = time.monotonic()
        for watch in watches:
            if not watch.stop.is_set():
                watch.check_stall(now)


_WATCHER = _Watcher()
