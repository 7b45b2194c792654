"""The local stack a fault is injected into: a private redis-server (AOF on), the scripted model server, a
bare git remote, and real `cadre` processes (planner, judge, beat, workers), each in its own process group.

With `namespaced_workers`, that many workers run in a network namespace (a second "host", see netns.py);
Redis and the model server then listen on the namespace's host-side address, and every process uses it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.faults.netns import Namespace
from bench.faults.policy import Policy
from orchestrator.local.processes import CadreProcess, RedisServer
from orchestrator.state.models import ItemStatus, Run, WorkItem
from orchestrator.state.records import connect
from orchestrator.state.store import Store
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.services import make_remote

ITEMS_PER_RUN = 3
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
T = TypeVar("T")


@dataclass(frozen=True)
class StackSettings:
    overrides: tuple[tuple[str, str], ...] = ()  # (NAME, value): CADRE_NAME for every process; else Cadre's defaults
    workers: int = 3  # worker processes in all (namespaced ones included), one agent each
    judge_delay: float = 0.0  # seconds the scripted judge waits before its verdict
    workers_at_start: bool = True
    namespaced_workers: int = 0
    run_timeout: float = 300.0


def wait_for(probe: Callable[[], T], timeout: float, interval: float = 0.05) -> T | None:
    """What `probe` returns once it is truthy, probing every `interval` s for `timeout` s; else None."""
    deadline, value = time.monotonic() + timeout, probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value or None


class Stack:
    def __init__(self, root: Path, settings: StackSettings):
        self.root, self.settings = root, settings
        self.count = 0
        self.groups: dict[int, int] = {}
        self.indexes: dict[int, int] = {}  # pid of a `cadre` process → its node index
        self.namespace: Namespace | None = None
        self.redis: RedisServer | None = None
        self.model: ScriptedModelServer | None = None
        self.workers: list[CadreProcess] = []
        self.namespaced: set[int] = set()  # pids (= process groups) of the workers inside the namespace
        self.others: list[CadreProcess] = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        if self.settings.namespaced_workers:
            self.namespace = Namespace().create()
        host = self.namespace.host_address if self.namespace else "127.0.0.1"
        # A password, since Redis refuses clients from outside the loopback interface without one (protected mode).
        self.redis = RedisServer(self.root / "redis", host=host, password=secrets.token_hex(16))
        self.redis.start()
        self.store = Store(connect(self.redis.url, patient=True))
        self.policy = Policy(ITEMS_PER_RUN, judge_delay=self.settings.judge_delay)
        self.model = ScriptedModelServer(self.policy, host=host).start()
        self.remote = make_remote(self.root / "git", {"README.md": "bench\n"})
        # Cadre's own defaults for everything but what is set here (no CADRE_ variable of ours leaks in).
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("CADRE_")}
        self.env.update({"CADRE_REDIS_URL": self.redis.url, "CADRE_DATA_DIR": str(self.root / "data"),
                         "CADRE_API_KEY": "bench-key", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                         "PYTHONPATH": str(REPO_ROOT)})
        self.env.update({f"CADRE_{name}": str(value) for name, value in self.settings.overrides})
        for role in ("PLANNER", "WORKER", "JUDGE"):
            self.env[f"CADRE_{role}_MODEL"] = "openai/bench"
            self.env[f"CADRE_{role}_API_BASE"] = self.model.base_url
        self.planner = self.spawn("worker", "--role", "planner")
        self.judge = self.spawn("worker", "--role", "judge")
        self.others = [self.planner, self.judge, self.spawn("beat")]
        if self.settings.workers_at_start:
            self.start_workers()
        self.wait_ready([self.planner, self.judge, *self.workers])

    # processes

    def spawn(self, *args: str, namespaced: bool = False) -> CadreProcess:
        """A `cadre` process; every one has its own node index (Celery node `<role>-<index>@host`)."""
        self.count += 1
        env, program = {**self.env, "CADRE_NODE_INDEX": str(self.count)}, None
        if namespaced:
            env["CADRE_DATA_DIR"] = str(self.root / "data-namespaced")
            program = self.namespace.command([sys.executable, "-m", "orchestrator.cli.main"])
        process = CadreProcess(list(args), env, self.root / f"process-{self.count}.log", program)
        self.indexes[process.process.pid] = self.count
        return process

    def answers(self, process: CadreProcess, role: str = "worker", timeout: float = 3) -> bool:
        """Whether the Celery node of `process` answers a ping through the broker (`cadre health`)."""
        return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "health", "--role", role, "--index",
                               str(self.indexes[process.process.pid]), "--timeout", str(timeout)],
                              env=self.env, capture_output=True, check=False).returncode == 0

    def start_workers(self) -> list[CadreProcess]:
        started = []
        for k in range(self.settings.workers):
            namespaced = k < self.settings.namespaced_workers
            started.append(self.spawn("worker", "--role", "worker", namespaced=namespaced))
            if namespaced:
                self.namespaced.add(started[-1].process.pid)
        self.workers += started
        return started

    def stop_workers(self) -> None:
        for process in self.workers:
            process.stop()
        self.workers = []

    def wait_ready(self, processes: list[CadreProcess], timeout: float = 180) -> None:
        """Until every Celery worker in `processes` logged that it is ready."""
        if not wait_for(lambda: all(" ready." in p.log() for p in processes), timeout, 0.2):
            raise RuntimeError(f"workers not ready after {timeout:g} s: see the logs in {self.root}")

    def kill(self, process: CadreProcess) -> float:
        """SIGKILL the process group of `process` (main process and pool); returns when it was killed."""
        os.killpg(process.process.pid, signal.SIGKILL)
        killed_at = time.time()
        process.stop()
        return killed_at

    def replace_worker(self, dead: CadreProcess) -> CadreProcess:
        fresh = self.spawn("worker", "--role", "worker")
        self.workers[self.workers.index(dead)] = fresh
        return fresh

    def replace_judge(self) -> CadreProcess:
        fresh = self.spawn("worker", "--role", "judge")
        self.others[self.others.index(self.judge)] = self.judge = fresh
        return fresh

    def group_of(self, pid: int) -> int | None:
        """The process group (= the `cadre` process it belongs to) of a pool process; remembered past its death."""
        if pid not in self.groups:
            try:
                self.groups[pid] = os.getpgid(pid)
            except ProcessLookupError:
                return None
        return self.groups[pid]

    def owner(self, pid: int) -> CadreProcess | None:
        group = self.group_of(pid)
        return next((w for w in self.workers if w.process.pid == group), None)

    # runs

    def start_run(self, tag: str) -> str:
        started = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(self.remote),
                                  "--goal", tag], env=self.env, capture_output=True, text=True, check=False)
        if started.returncode != 0:
            raise RuntimeError(f"cadre run failed: {started.stderr.strip()[-500:]}")
        return started.stdout.split()[0]

    def run(self, run_id: str) -> Run:
        return self.store.runs.get(run_id)

    def items(self, run_id: str) -> list[WorkItem]:
        return self.store.items.many(self.store.items.ids_of_run(run_id))

    def running(self, run_id: str) -> dict[str, int]:
        """item → pid of the process running its current attempt, for the run's running items."""
        found = {i.id: i.attempts[-1].pid for i in self.items(run_id) if i.status is ItemStatus.RUNNING and i.attempts}
        for pid in found.values():
            self.group_of(pid)
        return found

    def unsettled(self, run_id: str) -> list[str]:
        return [i.id for i in self.items(run_id) if i.status in {ItemStatus.QUEUED, ItemStatus.RUNNING}]

    def ended(self, run_id: str) -> bool:
        return self.run(run_id).is_over

    def wait_run(self, run_id: str) -> bool:
        """Until the run ends (True), or `run_timeout` passed: then it is stopped (False)."""
        if wait_for(lambda: self.ended(run_id), self.settings.run_timeout, 0.2):
            return True
        subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "stop", run_id], env=self.env,
                       capture_output=True, text=True, check=False)
        return False

    def events(self, run_id: str, *types: str) -> list:
        return [e for e in self.store.events.read(run_id) if e.type in types]

    def close(self) -> None:
        for process in self.workers + self.others:
            try:
                process.stop()
            except Exception as exc:  # noqa: BLE001 - keep closing the rest
                print(f"could not stop {process.args}: {exc}", file=sys.stderr)
        if self.model is not None:
            self.model.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.namespace is not None:
            self.namespace.close()
