"""Who a Celery worker is, and whether it is alive: stable hostnames, pings, and beat's heartbeat.

A Celery worker's hostname is `<role>@<host>` (or `<role>-<index>@<host>` when one host runs several
processes of a role), so a restarted process comes back under its old name: Flower merges it with its
past, and a healthcheck pings exactly its own worker, never "any worker that answers". (In Cadre,
"node" means a planner node only.)
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from celery.beat import PersistentScheduler

BEAT_HEARTBEAT_FILE = "beat.heartbeat"


def celery_hostname(role: str, index: int | None = None, host: str | None = None) -> str:
    """The Celery hostname of a `cadre worker --role <role> [--index N]` process on `host` (this host)."""
    suffix = f"-{index}" if index is not None else ""
    return f"{role}{suffix}@{host or socket.gethostname()}"


def ping_worker(app, name: str, timeout: float = 10.0) -> bool:
    """Whether the Celery worker `name` itself answers a broadcast ping within `timeout` seconds."""
    replies = app.control.ping(destination=[name], timeout=timeout)
    return any(name in reply for reply in replies)


def beat_heartbeat_path(data_dir: Path) -> Path:
    return data_dir / BEAT_HEARTBEAT_FILE


def beat_heartbeat_age(data_dir: Path) -> float | None:
    """Seconds since beat's scheduler last went round its loop, or None if it never did here."""
    try:
        return time.time() - beat_heartbeat_path(data_dir).stat().st_mtime
    except FileNotFoundError:
        return None


class HeartbeatScheduler(PersistentScheduler):
    """Celery beat's persistent scheduler, touching a heartbeat file at every round of its loop.

    A frozen or wedged beat stops touching it, which its liveness check (`cadre health --role beat`) sees.
    """

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        from orchestrator.config.settings import get_settings

        beat_heartbeat_path(get_settings().data_dir).touch()
        return interval
