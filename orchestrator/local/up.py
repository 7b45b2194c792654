"""`cadre up`: the whole stack on one machine without Docker, stopped cleanly by Ctrl-C.

A redis-server from PATH when none answers at CADRE_REDIS_URL, then one process per role, beat
and Flower, each in its own process group with its log under `<data dir>/logs/`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import redis

from orchestrator.config.secrets import redact_url
from orchestrator.local.processes import CadreProcess, RedisServer
from orchestrator.state.records import StoreUnavailable

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Flower forgets a worker node this long after it went offline (restarts come back under the same name).
FLOWER_PURGE_OFFLINE_SECONDS = 600


def ensure_redis(url: str, data_dir: Path) -> RedisServer | None:
    """None if Redis answers at `url`; else a redis-server started for it (local URLs only)."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        pass
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise StoreUnavailable(f"Redis unreachable at {redact_url(url)} and it is not local, so cadre up cannot start it")
    try:
        return RedisServer(data_dir / "redis", port=parsed.port or 6379, password=parsed.password).start()
    except RuntimeError as exc:
        raise StoreUnavailable(str(exc)) from None


class LocalStack:
    """Planner, workers, judge, beat and (optionally) Flower as local processes sharing `env`."""

    def __init__(self, env: dict[str, str], data_dir: Path, workers: int = 2, flower_port: int | None = 5555):
        self.env, self.data_dir, self.workers, self.flower_port = env, data_dir, workers, flower_port
        self.redis: RedisServer | None = None
        self.processes: dict[str, CadreProcess] = {}

    def start(self) -> LocalStack:
        """Start Redis if needed, then every role; returns self. What started is stopped by `stop()`."""
        self.redis = ensure_redis(self.env["CADRE_REDIS_URL"], self.data_dir)
        logs = self.data_dir / "logs"
        for name, args in (("planner", ["worker", "--role", "planner", "--concurrency", "2"]),
                           ("worker", ["worker", "--role", "worker", "--concurrency", str(self.workers)]),
                           ("judge", ["worker", "--role", "judge"]), ("beat", ["beat"])):
            self.processes[name] = CadreProcess(args, self.env, logs / f"{name}.log")
        if self.flower_port:
            flower = ["--app", "orchestrator.queues.app:app", "flower", f"--port={self.flower_port}",
                      "--address=127.0.0.1", "--persistent=True", f"--db={self.data_dir / 'flower.db'}",
                      f"--purge_offline_workers={FLOWER_PURGE_OFFLINE_SECONDS}"]
            if self.env.get("FLOWER_BASIC_AUTH"):
                flower.append(f"--basic-auth={self.env['FLOWER_BASIC_AUTH']}")
            self.processes["flower"] = CadreProcess(flower, self.env, logs / "flower.log",
                                                    program=[sys.executable, "-m", "celery"])
        return self

    def failed(self) -> list[str]:
        """Names of the stack's processes (Redis included, if the stack started it) that have exited."""
        dead = [name for name, p in self.processes.items() if p.process.poll() is not None]
        if self.redis is not None and self.redis.process is not None and self.redis.process.poll() is not None:
            dead.append("redis-server")
        return dead

    def stop(self) -> None:
        """SIGTERM every process group (workers rescue and requeue their items), then Redis; nothing is left."""
        for process in self.processes.values():
            if process.process.poll() is None:
                os.killpg(process.process.pid, signal.SIGTERM)
        for process in self.processes.values():
            process.stop(timeout=60)
        if self.redis is not None:
            self.redis.stop()


def stack_environment(data_dir: Path) -> dict[str, str]:
    """This process's environment with the data dir and local cost map set, for the stack's processes."""
    return {**os.environ, "CADRE_DATA_DIR": str(data_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def serve(stack: LocalStack, announce) -> int:
    """Start the stack and keep it up until SIGTERM, SIGINT or SIGHUP (0), or until one of its processes
    dies (1, naming it); then stop all of it.

    The handlers are installed first and explicitly, so a stop request during start-up still cleans
    up, and SIGINT works even when this process was started with SIGINT ignored (a background job).
    """
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum, _frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    try:
        stack.start()
        announce(f"Cadre is up: {stack.workers} workers, logs in {stack.data_dir / 'logs'}"
                 + (f", Flower at http://127.0.0.1:{stack.flower_port}" if stack.flower_port else "")
                 + ". Ctrl-C stops it.")
        while not stop.wait(1):
            if dead := stack.failed():
                announce(f"stopping everything: {', '.join(dead)} exited (see {stack.data_dir / 'logs'})")
                return 1
        announce(f"stopping everything ({received[0]}): workers push their work to rescue branches and requeue it")
        return 0
    finally:
        stack.stop()
