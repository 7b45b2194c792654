"""Task events in batches: each worker publishes its task events (received, started, succeeded...) for Flower
at most once every `celery_event_batch_seconds`, as one `task.multi` message, instead of about once per event.

Celery already buffers task events when its worker runs an event loop, but flushes the buffer at the loop's
next turn, so at a few tasks a second nearly every event still goes out alone. This consumer step arms one
timer when the first event of a batch is buffered and flushes them all when it fires (or when `BATCH_LIMIT`
are waiting). Flower reads batches as it reads single events (Celery's event receiver takes lists); what it
shows is at most that many seconds late. Worker heartbeats are not task events and go out at once.
"""

from __future__ import annotations

import logging
import threading

from celery import bootsteps

log = logging.getLogger(__name__)
BATCH_LIMIT = 500


class EventBatching(bootsteps.StartStopStep):
    """Flush a worker's buffered task events on a timer (the consumer's `Events` step made the dispatcher)."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent, **kwargs):
        self.seconds = float(parent.app.conf.get("cadre_event_batch_seconds") or 0)
        super().__init__(parent, **kwargs)

    def start(self, c) -> None:
        dispatcher = c.event_dispatcher
        if not self.seconds or dispatcher is None or not dispatcher.buffer_group:
            return
        dispatcher.buffer_limit = BATCH_LIMIT
        dispatcher.on_send_buffered = flush_within(dispatcher, self.seconds)


def flush_within(dispatcher, seconds: float):
    """An `on_send_buffered` callback: the first event buffered arms a timer that flushes the whole batch."""
    armed = threading.Lock()

    def flush() -> None:
        armed.release()
        try:
            dispatcher.flush(errors=False, groups=True)
        except Exception as exc:  # a Redis blip: Celery keeps what it could not send for its next flush
            log.warning("task events not sent: %s", type(exc).__name__)

    def on_buffered() -> None:
        if armed.acquire(blocking=False):  # called from any pool thread: one timer per batch
            timer = threading.Timer(seconds, flush)
            timer.daemon = True
            timer.start()

    return on_buffered
