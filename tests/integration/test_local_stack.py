"""`cadre up` under a supervisor, and the liveness checks containers use.

`cadre up` stops its whole stack on SIGTERM, SIGHUP and SIGINT (even when started with SIGINT
ignored, as a background job of a script is), and stops everything, naming it, when a role dies.
`cadre health` pings its own node only, so a frozen process fails; beat has a heartbeat of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cadre_env, wait_until
from tests.services import free_port

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (children in their own sessions included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def start_up(tmp_path: Path, ignore_sigint: bool = False,
             redis_url: str | None = None) -> tuple[subprocess.Popen, Path]:
    """`cadre up` with its own redis-server (on a free port, or at `redis_url`), one worker, no Flower, on the
    demo model URL (never called)."""
    env = cadre_env(redis_url or f"redis://127.0.0.1:{free_port()}/0", tmp_path / "data", None,
                    CADRE_DEMO_MODEL_URL="http://127.0.0.1:9/v1")
    log = tmp_path / "up.log"
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "up", "--workers", "1",
                                "--flower-port", "0"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               preexec_fn=preexec)
    wait_until(lambda: "Cadre is up" in log.read_text() or process.poll() is not None, 60, "cadre up did not start")
    # every role started: redis-server, planner, worker, judge, beat (and the pool processes)
    wait_until(lambda: len(descendants(process.pid)) >= 5, 30, f"roles missing\n{log.read_text()}")
    return process, log


@pytest.mark.parametrize("signum, ignore_sigint", [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                                   (signal.SIGINT, True)], ids=["SIGTERM", "SIGHUP", "SIGINT-ignored"])
def test_cadre_up_stops_its_whole_stack_on_a_signal(tmp_path, signum, ignore_sigint):
    process, log = start_up(tmp_path, ignore_sigint)
    time.sleep(2)
    stack = descendants(process.pid)
    process.send_signal(signum)
    assert process.wait(timeout=90) == 0, log.read_text()
    assert f"stopping everything ({signal.Signals(signum).name})" in log.read_text()
    wait_until(lambda: not alive(stack), 15, f"left running: {alive(stack)}")


def test_cadre_up_stops_everything_when_a_role_dies(tmp_path):
    process, log = start_up(tmp_path)
    time.sleep(2)
    stack = descendants(process.pid)
    judge = next(pid for pid in stack if "--role\0judge" in Path(f"/proc/{pid}/cmdline").read_text())
    os.kill(judge, signal.SIGKILL)
    assert process.wait(timeout=90) == 1, log.read_text()
    assert "stopping everything: judge exited" in log.read_text()
    wait_until(lambda: not alive(stack), 15, f"left running: {alive(stack)}")


def test_health_pings_only_its_own_node_and_a_frozen_one_fails(cadre):
    stack = cadre(None, CADRE_DEMO_MODEL_URL="http://127.0.0.1:9/v1", CADRE_TICK_SECONDS="1")
    first, second = stack.worker("worker"), stack.worker("worker")
    beat = stack.beat()
    # (each `cadre health` is a Python process: wait for the workers' own word before asking)
    wait_until(lambda: all(" ready." in w.log() for w in (first, second)), 120, f"workers not ready\n{stack.logs()}")
    wait_until(lambda: stack.cli("health", "--role", "worker", "--index", "1").returncode == 0, 60,
               f"worker-1 never healthy\n{stack.logs()}", interval=1)
    assert stack.cli("health", "--role", "worker", "--index", "2").returncode == 0
    assert stack.cli("health", "--role", "worker", "--index", "3", "--timeout", "2").returncode == 1  # no such node
    wait_until(lambda: stack.cli("health", "--role", "beat").returncode == 0, 30, f"beat never alive\n{stack.logs()}",
               interval=1)
    os.killpg(first.process.pid, signal.SIGSTOP)
    os.killpg(beat.process.pid, signal.SIGSTOP)
    try:
        frozen = stack.cli("health", "--role", "worker", "--index", "1", "--timeout", "3")
        assert frozen.returncode == 1 and "did not answer" in frozen.stderr
        assert stack.cli("health", "--role", "worker", "--index", "2").returncode == 0, "the other one still answers"
        wait_until(lambda: stack.cli("health", "--role", "beat").returncode == 1, 30, "a frozen beat stayed alive",
                   interval=1)
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
        os.killpg(beat.process.pid, signal.SIGCONT)
    wait_until(lambda: stack.cli("health", "--role", "beat").returncode == 0, 30, "beat did not come back", interval=1)


def test_a_worker_with_max_tasks_serves_one_item_and_exits(cadre, remote, store):
    """`cadre worker --max-tasks 1` (a Kubernetes Job per item) takes one item, lands it, exits 0; the other
    item waits for the next such worker (the first job prefork, the second with its agent in its one process)."""
    from orchestrator.testing.scripted_model import ScriptedModelServer
    from tests.integration.policies import single_item_plan
    from tests.integration.test_reliability import start_run, wait_done

    with ScriptedModelServer(single_item_plan("write j1.txt: one", "write j2.txt: two")) as server:
        stack = cadre(server.base_url)
        stack.worker("planner")
        stack.worker("judge")
        run_id = start_run(stack, remote)
        wait_until(lambda: len(store.items.ids_of_run(run_id)) == 2, 60, "items not created")
        jobs = []
        for pool in ("prefork", "threads"):
            job = stack.worker("worker", 1, "--max-tasks", "1", "--pool", pool)
            jobs.append(job)
            assert job.process.wait(timeout=120) == 0, job.log()[-2000:]
        wait_done(store, run_id, stack)
    assert sorted(t.status.value for t in store.items.many(store.items.ids_of_run(run_id))) == ["done", "done"]


def test_cadre_up_says_which_role_refused_to_start_and_why(tmp_path):
    """A role that exits during start-up stops the stack within seconds, with that role's one-line reason."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_")} | {
        "CADRE_DATA_DIR": str(tmp_path / "data"), "CADRE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "CADRE_DEMO_MODEL_URL": "http://127.0.0.1:9/v1", "CADRE_WORKER_BACKEND": "claude-code",
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "up", "--workers", "1", "--flower-port", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1 and time.monotonic() - began < 60, out
    assert "stopping everything: worker exited: error: worker backend claude-code needs the program 'claude'" in out, out
