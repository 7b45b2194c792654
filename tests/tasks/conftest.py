"""Task-level tests: Cadre's own Celery app and tasks, served in-process by Celery's test worker
(`celery.contrib.testing.worker.start_worker`, threads pool) against the session's real Redis.

The module-level app and the process-wide store are pointed at the test Redis for the test, and put
back afterwards, so the rest of the session is unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import kombu.pools
import pytest
from celery.contrib.testing.worker import start_worker

import orchestrator.state.store as store_module
from orchestrator.config.settings import get_settings

QUEUES = ["plan", "work", "judge"]


@pytest.fixture
def cadre_app(redis_url, redis_client, tmp_path, monkeypatch):
    """Cadre's Celery app (with every role's tasks registered) and settings, on the test Redis."""
    monkeypatch.setenv("CADRE_REDIS_URL", redis_url)
    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CADRE_LEASE_SECONDS", "30")
    get_settings.cache_clear()
    monkeypatch.setattr(store_module, "_store", None)
    from judge import tasks as _judge_tasks  # noqa: F401  (register every role's tasks on the app)
    from orchestrator.queues.app import app
    from planners import tasks as _planner_tasks  # noqa: F401
    from workers import tasks as _worker_tasks  # noqa: F401

    previous = (app.conf.broker_url, app.conf.result_backend)
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    _drop_connections(app)
    yield app
    app.conf.update(broker_url=previous[0], result_backend=previous[1])
    _drop_connections(app)
    get_settings.cache_clear()


def _drop_connections(app) -> None:
    """Forget the app's connection and producer pools (and kombu's shared ones), so that the next use
    connects to the broker the app is configured with now."""
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


@pytest.fixture
def task_worker(cadre_app) -> Iterator:
    """Celery's in-process test worker serving the plan, work and judge queues (two threads)."""
    with start_worker(cadre_app, pool="threads", concurrency=2, queues=QUEUES, perform_ping_check=False,
                      shutdown_timeout=60, loglevel="WARNING") as worker:
        yield worker


def configure_models(monkeypatch, base_url: str) -> None:
    """Point every role at the scripted model server (settings are read again)."""
    for role in ("PLANNER", "WORKER", "JUDGE"):
        monkeypatch.setenv(f"CADRE_{role}_MODEL", "openai/scripted")
        monkeypatch.setenv(f"CADRE_{role}_API_BASE", base_url)
    monkeypatch.setenv("CADRE_API_KEY", "sk-task-level-test-0000")
    get_settings.cache_clear()
