"""`create_task`'s priority is honoured on the `work` queue: higher runs first."""

from __future__ import annotations

import pytest

from orchestrator.queues.inspection import waiting_args
from orchestrator.queues.names import EXECUTE_WORK_ITEM
from orchestrator.testing.scripted_model import ScriptedModelServer, call, reply
from tests.conftest import wait_until
from tests.integration.policies import tool_names, tool_results, write_files_worker
from tests.integration.test_reliability import start_run, wait_done

pytestmark = pytest.mark.integration


def test_items_start_in_priority_order(cadre, remote, store):
    def policy(request):
        names = tool_names(request)
        if "create_task" in names:
            if tool_results(request) or "This is round" in str(request["messages"]):
                return reply(call("finish", summary="planned"))
            return reply(*(call("create_task", title=f"write p{p}.txt: priority {p}", instructions="Write it.",
                                priority=p) for p in (0, 9, 5, 2)))
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="fine"))
        return write_files_worker(request)

    with ScriptedModelServer(policy) as server:
        stack = cadre(server.base_url)
        stack.worker("planner")
        stack.worker("judge")
        run_id = start_run(stack, remote)
        wait_until(lambda: len(waiting_args(store.redis, "work", EXECUTE_WORK_ITEM)) == 4, 60, "items not queued")
        stack.worker("worker")  # one worker, one item at a time: the queue's order decides
        wait_done(store, run_id, stack)
    claimed = [e.data["item_id"] for e in store.events.read(run_id) if e.type == "item_claimed"]
    titles = [store.items.get(item_id).title.split(":")[0] for item_id in claimed]
    assert titles == ["write p9.txt", "write p5.txt", "write p2.txt", "write p0.txt"]
