"""Keeping a worker's pool processes light: what they share with the main process stays shared.

A prefork pool process starts as copy-on-write pages of the main process. Python's cyclic garbage
collector writes into every object it scans, so a collection in the main process (or in a pool
process) after the fork copies, page by page, memory that was shared, and each pool process ends up
holding its own copy of everything imported (litellm alone is about 170 MB). `freeze_before_fork`
collects once, then moves every object alive into the collector's permanent generation
(`gc.freeze()`), which no later collection scans: the pages stay shared.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def auto_pool(concurrency: int, external_agents: bool = False) -> str:
    """The pool `--pool auto` takes: threads for one agent (a second process would only hold twice every
    page the agent writes after the fork) and for external agent programs (each slot only waits on its
    program: a thread, not a process, per slot), prefork for several builtin agents (their model calls and
    tools run in Python, so each gets a core's worth of interpreter; their processes share the imports)."""
    return "threads" if concurrency == 1 or external_agents else "prefork"


def freeze_before_fork(**_signal) -> None:
    """Collect, then freeze every object alive now, so the pool processes keep sharing them."""
    gc.collect()
    gc.freeze()
    log.debug("froze %s objects before forking the pool", gc.get_freeze_count())


def connect_pool_memory() -> None:
    """Freeze when the worker initialises: after the task modules are imported, before the pool forks."""
    from celery.signals import worker_init

    worker_init.connect(freeze_before_fork, weak=False)
