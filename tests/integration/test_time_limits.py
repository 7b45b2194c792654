"""A worker's time limits hold in both pools: prefork's are Celery's, the threads pool keeps its own."""

from __future__ import annotations

import re
import time

import pytest

from orchestrator.testing.scripted_model import ScriptedModelServer, call, reply
from tests.conftest import wait_until
from tests.integration.policies import Gate, single_item_plan, tool_names, tool_results
from tests.integration.test_reliability import (
    claim_of,
    commits_with_trailer,
    process_running,
    start,
    start_run,
    wait_done,
)
from tests.services import git

pytestmark = pytest.mark.integration
# A hard limit of 40 s gives a soft limit of 10 s (Celery's margin of 30 s, at least 10 s).
LIMITS = {"CADRE_WORKER_TIME_LIMIT_SECONDS": "40", "CADRE_LEASE_SECONDS": "3", "CADRE_TICK_SECONDS": "1"}


def write_then_hang(request: dict):
    """A worker that writes x.txt, then runs a command that would take 100 s."""
    if "create_task" in tool_names(request) or "verdict" in tool_names(request):
        return single_item_plan("write x.txt, then wait")(request)
    if not tool_results(request):
        return reply(call("write_file", path="x.txt", content="started\n"))
    return reply(call("bash", command="sleep 100"))


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_the_soft_time_limit_stops_a_running_command_and_keeps_the_work(cadre, remote, store, pool):
    with ScriptedModelServer(write_then_hang) as server:
        stack = cadre(server.base_url, **LIMITS, CADRE_WORKER_POOL=pool)
        [worker] = start(stack, 1)
        run_id = start_run(stack, remote)
        wait_done(store, run_id, stack, timeout=90)
    [item_id] = store.items.ids_of_run(run_id)
    item = store.items.get(item_id)
    events = store.events.read(run_id)
    claim, handoff = (next(e for e in events if e.type == kind) for kind in ("item_claimed", "handoff"))
    assert item.status.value == "failed" and item.handoff.status.value == "partial", item.handoff
    assert "time limit" in item.handoff.summary
    assert handoff.at - claim.at < 30, "stopped at the soft limit (10 s), not after the 100 s command"
    assert "x.txt" in git("ls-tree", "--name-only", item.handoff.rescue_branch, cwd=remote)
    assert commits_with_trailer(remote, item_id) == []
    assert worker.process.poll() is None, "the soft limit stops the task, not the worker"


def test_past_its_hard_limit_a_threads_worker_is_killed_and_the_item_lands_elsewhere(cadre, remote, store):
    """The agent waits on its model (a read the soft limit cannot interrupt) past the hard limit: the worker
    process is killed, as prefork kills its pool process, and the item's next attempt lands."""
    gate = Gate(single_item_plan("write h.txt: after the hard limit"))
    with ScriptedModelServer(gate) as server:
        stack = cadre(server.base_url, **LIMITS, CADRE_WORKER_POOL="threads")
        workers = start(stack, 2)
        run_id = start_run(stack, remote)
        claim = wait_until(lambda: gate.waiting and claim_of(store, run_id), 60, f"no claim\n{stack.logs()}")
        stuck = process_running(workers, claim)
        began = time.monotonic()
        stuck.process.wait(timeout=90)
        killed_after = time.monotonic() - began
        gate.open()
        wait_done(store, run_id, stack, timeout=120)
    assert stuck.process.returncode == -9, stuck.log()[-3000:]
    assert re.search(r"passed its hard time limit \(40 s\): killing this worker", stuck.log())
    assert killed_after < 45
    [item_id] = store.items.ids_of_run(run_id)
    item = store.items.get(item_id)
    assert [a.outcome for a in item.attempts] == ["lost", "landed"], item.attempts
    assert commits_with_trailer(remote, item_id) == [item.handoff.commit]
