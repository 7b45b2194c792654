"""Celery's time limits for the threads pool, which enforces none of its own.

Under prefork, a task's `soft_time_limit` raises `SoftTimeLimitExceeded` in its pool process (the
agent stops, its work in progress goes to a rescue branch) and its `time_limit` kills that process.
The threads pool runs the task in a thread of the worker's one process, so the same limits are kept
here with two timers per task:

- at the soft limit, `SoftTimeLimitExceeded` is raised in the task's thread, at its next Python
  instruction (a call blocked inside C, such as a socket read, returns first: Cadre's commands poll
  their processes, so a running command is stopped at once);
- at the hard limit, the task still running: with one slot, the worker process is killed, as prefork
  kills its pool process. With several slots (light slots: many external agents in one process), the
  others must not go down with it, so `HardTimeLimit` is raised in the task's thread (the attempt ends,
  its item is requeued; a `BaseException`, so no `except Exception` on the way, such as litellm's retries
  around a model call, can swallow it, as one can a soft limit's exception), and only a task still running `HARD_LIMIT_GRACE_SECONDS` later (stuck in
  a call that never returns to Python) takes the process down. Either way, an item whose worker died
  has its lease lapse, and recovery hands it to another worker.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)
HARD_LIMIT_GRACE_SECONDS = 30.0


class HardTimeLimit(BaseException):
    """Raised in a light slot's thread at its task's hard time limit: the task ends there, as prefork's
    pool process would be killed, without its process's other slots."""


@dataclass
class _Limits:
    """The timers of one running task, and whether it is still running (guarded by `lock`)."""

    thread_id: int
    timers: list[threading.Timer] = field(default_factory=list)
    running: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


_running: dict[str, _Limits] = {}
_slots = {"count": 1}


def limits_of(task) -> tuple[float | None, float | None]:
    """(soft, hard) seconds for this delivery of `task`: the message's own limits, else the task's."""
    hard, soft = task.request.timelimit or (None, None)
    return soft or task.soft_time_limit, hard or task.time_limit


def _raise_in(limits: _Limits, exception: type[BaseException]) -> None:
    """Raise `exception` in the task's thread at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(limits.thread_id), ctypes.py_object(exception))


def _raise_soft_limit(task_id: str, limits: _Limits, seconds: float) -> None:
    with limits.lock:
        if not limits.running:
            return
        log.warning("task %s passed its soft time limit (%.0f s): stopping it", task_id, seconds)
        _raise_in(limits, SoftTimeLimitExceeded)


def _kill_worker(task_id: str, limits: _Limits, seconds: float) -> None:
    with limits.lock:
        if not limits.running:
            return
        log.error("task %s passed its hard time limit (%.0f s): killing this worker", task_id, seconds)
        os.kill(os.getpid(), signal.SIGKILL)


def _end_task(task_id: str, limits: _Limits, seconds: float) -> None:
    """The hard limit of one slot among several: end that task alone, and the process only if it will not end."""
    with limits.lock:
        if not limits.running:
            return
        log.error("task %s passed its hard time limit (%.0f s): ending it; if it still runs in %.0f s, "
                  "this worker is killed", task_id, seconds, HARD_LIMIT_GRACE_SECONDS)
        _raise_in(limits, HardTimeLimit)
        last_resort = threading.Timer(HARD_LIMIT_GRACE_SECONDS, _kill_worker,
                                      args=(task_id, limits, seconds + HARD_LIMIT_GRACE_SECONDS))
        last_resort.daemon = True
        limits.timers.append(last_resort)
        last_resort.start()


def _start_timers(task_id: str, task, **_signal) -> None:
    soft, hard = limits_of(task)
    limits = _Limits(threading.get_ident())
    at_hard_limit = _kill_worker if _slots["count"] == 1 else _end_task
    for seconds, act in ((soft, _raise_soft_limit), (hard, at_hard_limit)):
        if seconds:
            timer = threading.Timer(seconds, act, args=(task_id, limits, seconds))
            timer.daemon = True
            limits.timers.append(timer)
    _running[task_id] = limits
    for timer in limits.timers:
        timer.start()


def _stop_timers(task_id: str, **_signal) -> None:
    limits = _running.pop(task_id, None)
    if limits is None:
        return
    with limits.lock:  # a timer firing now waits, then finds the task finished
        limits.running = False
    for timer in limits.timers:
        timer.cancel()


def connect_thread_time_limits(slots: int = 1) -> None:
    """Keep each task's soft and hard time limits in a threads-pool worker of `slots` threads."""
    from celery.signals import task_postrun, task_prerun

    _slots["count"] = slots
    task_prerun.connect(_start_timers, weak=False)
    task_postrun.connect(_stop_timers, weak=False)
