"""Graceful shutdown of worker processes: SIGTERM asks the running agent to stop at its next step.

Celery's warm shutdown waits for running tasks, which may run for an hour. Instead, SIGTERM (sent
to the main process by `docker stop` or Kubernetes, or to the whole process group) is forwarded to
the pool processes, where it only sets a flag: the agent stops at its next step, its work in
progress is pushed to a rescue branch, and the item is requeued at once for another worker. With the
threads pool the agent runs in the main process, and the flag is set there.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
_requested = threading.Event()


def shutdown_requested() -> bool:
    """Whether this process was asked to shut down."""
    return _requested.is_set()


def shutdown_event() -> threading.Event:
    """The event set when this process is asked to shut down (for waits that must wake up on it)."""
    return _requested


def _on_sigterm(signum, _frame) -> None:
    if not _requested.is_set():
        log.warning("SIGTERM: stopping the running agent at its next step")
    _requested.set()


def install_stop_handler() -> None:
    """Make SIGTERM set the shutdown flag in this process instead of killing it."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def _in_pool_thread() -> bool:
    """Whether this code runs in a threads-pool task (the worker's main process, not its main thread)."""
    return threading.current_thread() is not threading.main_thread()


def _forward_to_pool(**_kwargs) -> None:
    from billiard.process import active_children

    _requested.set()  # a threads pool's agent runs here; a prefork main process runs no agent

    for child in active_children():
        try:
            os.kill(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue


def _before_task(**_kwargs) -> None:
    if _in_pool_thread():
        return  # the flag is set only when the whole worker stops, and Celery's handler owns SIGTERM here
    # Installed per task: billiard resets SIGTERM to its own exit handler after the pool process
    # initialiser runs, so an earlier installation would be overwritten.
    install_stop_handler()
    # A stop request only concerns the task that was running when it came: the pool process lives on,
    # and a real shutdown stops the main process from handing out new tasks first.
    _requested.clear()


def stop_after(tasks: int):
    """A `task_postrun` handler that asks this worker to shut down (warmly) once its pool process has run
    `tasks` tasks: a worker that serves one item and exits, as a Kubernetes Job does."""
    done = {"count": 0}

    def count(**_kwargs) -> None:
        done["count"] += 1
        if done["count"] >= tasks:
            log.info("served %s tasks: stopping this worker", done["count"])
            os.kill(os.getpid() if _in_pool_thread() else os.getppid(), signal.SIGTERM)

    return count


def connect_worker_signals(max_tasks: int = 0) -> None:
    """Wire the above into Celery: each task installs the handler; the main process forwards SIGTERM;
    with `max_tasks`, the worker stops after that many tasks."""
    from celery.signals import task_postrun, task_prerun, worker_shutting_down

    worker_shutting_down.connect(_forward_to_pool, weak=False)
    task_prerun.connect(_before_task, weak=False)
    if max_tasks:
        task_postrun.connect(stop_after(max_tasks), weak=False)
