"""Shared fixtures: a real Redis (our own redis-server on a free port), Cadre processes, git remotes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.services import REDIS_HINT, CadreProcess, RedisServer, make_remote

ROLES = ("planner", "subplanner", "worker", "judge")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis for the whole session: CADRE_TEST_REDIS_URL if given, else a private redis-server."""
    given = os.environ.get("CADRE_TEST_REDIS_URL")
    if given:
        redis.Redis.from_url(given).ping()
        yield given
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.exit(str(exc) if "not installed" in str(exc) else f"{exc}; {REDIS_HINT}", returncode=3)
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def store(redis_client):
    from orchestrator.state.store import Store

    return Store(redis_client)


@pytest.fixture
def remote(tmp_path) -> Path:
    """A bare git repository (the remote) with a small project on `main`."""
    return make_remote(tmp_path / "git", {"README.md": "# sample\n", "src/app.py": "print('hello')\n"})


def cadre_env(redis_url: str, data_dir: Path, model_base_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a Cadre process pointed at the test Redis and the scripted model server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_")}
    env.update({"CADRE_REDIS_URL": redis_url, "CADRE_DATA_DIR": str(data_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    if model_base_url:
        for role in ROLES:
            env[f"CADRE_{role.upper()}_MODEL"] = "openai/scripted"
            env[f"CADRE_{role.upper()}_API_BASE"] = model_base_url
        env["CADRE_API_KEY"] = "sk-test-not-a-real-key-123"
    env.update(extra)
    return env


@pytest.fixture
def cadre(tmp_path, redis_url, redis_client) -> Iterator[Callable]:
    """Start Cadre processes for a test: `cadre(model_url).worker("worker", 3)`; all stopped afterwards."""
    started: list[CadreProcess] = []

    class Stack:
        def __init__(self, model_base_url: str | None, **extra: str):
            self.data_dir = tmp_path / "data"
            self.env = cadre_env(redis_url, self.data_dir, model_base_url, **extra)

        def worker(self, role: str, concurrency: int = 1, *extra: str) -> CadreProcess:
            """A `cadre worker` of `role`; several of one role get their own node names (`--index`)."""
            index = 1 + sum(p.args[:3] == ["worker", "--role", role] for p in started)
            process = CadreProcess(["worker", "--role", role, "--concurrency", str(concurrency), "--index", str(index),
                                    *extra], self.env, tmp_path / f"{role}-{len(started)}.log")
            started.append(process)
            return process

        def beat(self) -> CadreProcess:
            process = CadreProcess(["beat"], self.env, tmp_path / f"beat-{len(started)}.log")
            started.append(process)
            return process

        def cli(self, *args: str, timeout: float = 120,
                env_override: dict[str, str] | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args],
                                  env=self.env | (env_override or {}), capture_output=True, text=True, timeout=timeout)

        def logs(self) -> str:
            return "\n".join(f"== {p.args} ==\n{p.log()}" for p in started)

    yield Stack
    for process in started:
        process.stop()


def wait_until(predicate: Callable[[], object], timeout: float, message: str, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s: {message}")
