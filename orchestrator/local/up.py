"""`cadre up`: the whole stack on one machine without Docker, stopped cleanly by Ctrl-C.

A redis-server from PATH when none answers at CADRE_REDIS_URL, then one process per role, beat
and Flower, each in its own process group with its log under `<data dir>/logs/`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

from orchestrator.config.secrets import redact_url
from orchestrator.local.processes import CadreProcess, RedisServer
from orchestrator.state.records import StoreUnavailable

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


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
        self.processes: list[CadreProcess] = []

    def start(self) -> LocalStack:
        """Start Redis if needed, then every role; returns self."""
        self.redis = ensure_redis(self.env["CADRE_REDIS_URL"], self.data_dir)
        logs = self.data_dir / "logs"
        for name, args in (("planner", ["worker", "--role", "planner", "--concurrency", "2"]),
                           ("worker", ["worker", "--role", "worker", "--concurrency", str(self.workers)]),
                           ("judge", ["worker", "--role", "judge"]), ("beat", ["beat"])):
            self.processes.append(CadreProcess(args, self.env, logs / f"{name}.log"))
        if self.flower_port:
            flower = ["--app", "orchestrator.queues.app:app", "flower", f"--port={self.flower_port}",
                      "--address=127.0.0.1", "--persistent=True", f"--db={self.data_dir / 'flower.db'}"]
            if self.env.get("FLOWER_BASIC_AUTH"):
                flower.append(f"--basic-auth={self.env['FLOWER_BASIC_AUTH']}")
            self.processes.append(CadreProcess(flower, self.env, logs / "flower.log",
                                               program=[sys.executable, "-m", "celery"]))
        return self

    def failed(self) -> list[str]:
        """Names of processes that have exited."""
        return [" ".join(p.args[:3]) for p in self.processes if p.process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM every process group (workers rescue and requeue their items), then Redis; nothing is left."""
        for process in self.processes:
            if process.process.poll() is None:
                os.killpg(process.process.pid, 15)
        for process in self.processes:
            process.stop(timeout=60)
        if self.redis is not None:
            self.redis.stop()


def stack_environment(data_dir: Path) -> dict[str, str]:
    """This process's environment with the data dir and local cost map set, for the stack's processes."""
    return {**os.environ, "CADRE_DATA_DIR": str(data_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def serve_until_interrupted(stack: LocalStack, announce) -> None:
    """Block until Ctrl-C (or a process dies), then stop the whole stack."""
    try:
        while True:
            if dead := stack.failed():
                announce(f"stopping: {', '.join(dead)} exited (see {stack.data_dir / 'logs'})")
                break
            time.sleep(1)
    except KeyboardInterrupt:
        announce("stopping (Ctrl-C): workers push their work to rescue branches and requeue it")
    finally:
        stack.stop()
