"""Lost work is found and sent again within two ticks: a work item's or a planner's message deleted from
Redis, a judge killed mid-verdict. Whatever is sent twice is still done once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from orchestrator.queues.inspection import waiting_args
from orchestrator.queues.names import EXECUTE_WORK_ITEM, PLAN_NODE
from orchestrator.testing.faults import drop_waiting
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import single_item_plan, tool_names
from tests.integration.test_reliability import commits_with_trailer, start_run, wait_done

pytestmark = pytest.mark.integration
TICK = {"CADRE_TICK_SECONDS": "2", "CADRE_LEASE_SECONDS": "4"}


def redispatched_after(store, run_id: str, since: float) -> float:
    event = next(e for e in store.events.read(run_id) if e.type == "redispatched")
    return event.at - since


def lost_message(store, run_id: str, role: str) -> str:
    """Delete the waiting message of the run's work item (role `worker`) or root planner (`planner`), as a
    broker that lost it would; returns the id it carried."""
    if role == "planner":
        [node_id] = store.nodes.ids_of_run(run_id)
        assert drop_waiting(store.redis, "plan", PLAN_NODE, node_id) == 1
        return node_id
    [item_id] = wait_until(lambda: store.items.ids_of_run(run_id), 60, "no item created")
    wait_until(lambda: waiting_args(store.redis, "work", EXECUTE_WORK_ITEM), 30, "the item was never queued")
    assert drop_waiting(store.redis, "work", EXECUTE_WORK_ITEM, item_id) == 1
    return item_id


def serving_since(*processes) -> float:
    """Wait until these `cadre worker`s (Celery's "ready.") and `cadre beat` ("beat: Starting") serve; the time."""
    for process in processes:
        marker = "beat: Starting" if process.args[0] == "beat" else " ready."
        wait_until(lambda p=process, m=marker: m in p.log(), 180, f"{process.args} did not start")
    return time.time()


@pytest.mark.parametrize("role", ["worker", "planner"])
def test_a_lost_message_is_sent_again(cadre, remote, store, role):
    with ScriptedModelServer(single_item_plan(f"write {role}.txt: found again")) as server:
        stack = cadre(server.base_url, **TICK)
        for other in {"planner", "worker", "judge"} - {role}:
            stack.worker(other)
        run_id = start_run(stack, remote)
        lost_id = lost_message(store, run_id, role)
        lost_at = time.time()
        worker, beat = stack.worker(role), stack.beat()  # nothing would ever take it now, but for the tick
        serving_at = max(lost_at, serving_since(worker, beat))
        wait_done(store, run_id, stack)
    # Two ticks past the grace, counted from when beat and the worker that runs its tick serve (how long
    # processes take to start is the machine's load, not the recovery's).
    assert redispatched_after(store, run_id, serving_at) < 2 * 2 + 2 + 10
    assert any(e.type == "redispatched" and e.data["id"] == lost_id for e in store.events.read(run_id))
    [item_id] = store.items.ids_of_run(run_id)
    item = store.items.get(item_id)
    assert [a.outcome for a in item.attempts] == ["landed"], "sent again, still done once"
    assert commits_with_trailer(remote, item_id) == [item.handoff.commit]


def test_a_judge_killed_mid_verdict_is_replaced(cadre, remote, store):
    judged = []

    def policy(request):
        if "verdict" in tool_names(request):
            judged.append(time.time())
            if len(judged) == 1:
                time.sleep(60)  # the first judge is killed while it waits for this answer
        return single_item_plan("write judged.txt: by the second judge")(request)

    with ScriptedModelServer(policy) as server:
        stack = cadre(server.base_url, **TICK)
        stack.worker("planner")
        stack.worker("worker")
        first_judge = stack.worker("judge")
        stack.beat()
        run_id = start_run(stack, remote)
        wait_until(lambda: judged, 90, f"the judge never asked for its verdict\n{stack.logs()}")
        os.killpg(first_judge.process.pid, signal.SIGKILL)
        killed_at = time.time()
        serving_at = max(killed_at + 4, serving_since(stack.worker("judge")))  # the lease lapses 4 s after the kill
        wait_done(store, run_id, stack)
    verdicts = [e for e in store.events.read(run_id) if e.type == "verdict"]
    assert len(verdicts) == 1 and len(judged) == 2, "judged once more, by the second judge only"
    assert verdicts[0].at - serving_at < 2 * 2 + 15  # once the lease lapsed and a judge serves: two ticks
