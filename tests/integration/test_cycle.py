"""Whole runs on real Redis, real Celery worker processes, a bare git remote and a scripted model."""

from __future__ import annotations

import json
import threading

import pytest

from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.integration.policies import TwoCyclePlan, single_item_plan, tool_names, tool_results
from tests.services import git

pytestmark = pytest.mark.integration


def start_stack(cadre, server, workers: int = 1, **extra):
    stack = cadre(server.base_url, **extra)
    stack.worker("planner")
    stack.worker("worker", workers)
    stack.worker("judge")
    return stack


def run_and_wait(stack, remote, goal: str, *extra: str, timeout: float = 180):
    result = stack.cli("run", "--repo", str(remote), "--goal", goal, "--wait", *extra, timeout=timeout)
    assert result.stdout.strip(), f"no run id printed\n{result.stderr}\n{stack.logs()}"
    run_id = result.stdout.splitlines()[0].strip()
    status = json.loads(stack.cli("status", run_id, "--json").stdout)
    return result, run_id, status


def remote_log(remote) -> list[str]:
    return git("log", "--format=%H %P", "main", cwd=remote).splitlines()


class SlowWorkers(TwoCyclePlan):
    """Workers wait for each other at their first step, so all three of cycle 1 provably overlap."""

    def __init__(self):
        self.barrier = threading.Barrier(3, timeout=60)
        self.lock = threading.Lock()
        self.waited: set[str] = set()

    def __call__(self, request):
        if "write_file" in tool_names(request) and not tool_results(request):
            title = request["messages"][1]["content"]
            with self.lock:
                first_time = title not in self.waited and len(self.waited) < 3
                self.waited.add(title)
            if first_time:
                self.barrier.wait()
        return super().__call__(request)


def test_two_cycle_run_lands_one_commit_per_item(cadre, remote, store):
    policy = SlowWorkers()
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, workers=3)
        result, run_id, status = run_and_wait(stack, remote, "Create the files the planner asks for.",
                                              "--max-cycles", "3")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    assert status["status"] == "done" and status["cycle"] == 2
    tasks = status["tasks"]
    assert len(tasks) == 4 and all(t["status"] == "done" and t["commit"] for t in tasks)
    assert status["tokens"] > 0 and status["cost_usd"] >= 0
    log = remote_log(remote)
    assert len(log) == 5, log
    assert all(len(line.split()) <= 2 for line in log), "history must be linear (no merge commits)"
    assert {t["commit"] for t in tasks} == {line.split()[0] for line in log[:4]}
    for task in tasks:
        assert f"Cadre-Item: {task['id']}" in git("log", "-1", "--format=%B", task["commit"], cwd=remote)
    files = git("ls-tree", "-r", "--name-only", "main", cwd=remote).splitlines()
    assert {"a.txt", "b.txt", "c.txt", "docs/notes.md"} <= set(files)
    cycle1 = [store.items.get(t["id"]) for t in tasks if t["cycle"] == 1]
    assert max(i.started_at for i in cycle1) < min(i.settled_at for i in cycle1), "cycle 1 items ran in parallel"
    verdicts = [c["verdict"] for c in status["cycles"]]
    assert verdicts[0]["done"] is False and verdicts[1]["done"] is True
    types = [e.type for e in store.events.read(run_id)]
    assert types.count("cycle_started") == 2 and types.count("verdict") == 2 and types[-1] == "run_ended"


def test_racing_workers_both_land_with_linear_history(cadre, remote):
    barrier = threading.Barrier(2, timeout=60)
    base = single_item_plan("write x.txt: one", "write y.txt: two")

    def policy(request):
        if "write_file" in tool_names(request) and tool_results(request):
            barrier.wait()  # both agents finish together, so both commits start from the same head
        return base(request)

    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, workers=2)
        result, run_id, status = run_and_wait(stack, remote, "Write two files.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    commits = [t["commit"] for t in status["tasks"]]
    assert all(commits), json.dumps(status, indent=1) + stack.logs()[-6000:]
    assert len(set(commits)) == 2
    log = remote_log(remote)
    assert len(log) == 3 and all(len(line.split()) <= 2 for line in log)
    parents = {line.split()[0]: line.split()[1] for line in log[:2]}
    initial = log[-1].split()[0]
    assert sorted(parents[c] == initial for c in commits) == [False, True], "one commit was rebased onto the other"


def test_worker_that_changes_nothing_settles_without_commit(cadre, remote, store):
    with ScriptedModelServer(single_item_plan("noop: look around")) as server:
        stack = start_stack(cadre, server)
        result, run_id, status = run_and_wait(stack, remote, "Check that nothing needs doing.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    [task] = status["tasks"]
    assert task["status"] == "done" and task["commit"] is None and task["handoff"] == "no_change"
    assert len(remote_log(remote)) == 1
    assert store.items.get(task["id"]).handoff.files_changed == []


def test_a_check_the_sandbox_cannot_run_fails_the_run_at_once_saying_why(cadre, remote):
    """No cycle can make a command the sandbox cannot find pass: the run ends `failed` after the first verdict,
    naming the command and the fix, instead of looping to max_cycles."""
    judged = single_item_plan("write a.txt: alpha")
    with ScriptedModelServer(lambda request: judged(request)) as server:
        stack = start_stack(cadre, server)
        result, _run_id, status = run_and_wait(stack, remote, "Write a.txt.", "--check", "no-such-tool --verify",
                                               "--max-cycles", "3")
    assert result.returncode != 0 and status["status"] == "failed" and status["cycle"] == 1, status
    assert "no-such-tool" in status["reason"] and "cannot run in the agent sandbox" in status["reason"], status["reason"]
    assert "CADRE_SANDBOX_READABLE" in status["reason"]
