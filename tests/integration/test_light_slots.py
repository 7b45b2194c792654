"""Light slots: one `cadre worker` process runs several external agents at once, each slot a thread, and keeps
what prefork gives: SIGTERM hands every running item over with its work, a killed process loses none of
its items, and a hard time limit ends its own task only."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import pytest

from orchestrator.testing import waiting_agent
from orchestrator.testing.scripted_model import ScriptedModelServer, reply
from tests.conftest import wait_until
from tests.integration.policies import prompt, single_item_plan, tool_names
from tests.integration.test_reliability import commits_with_trailer, start, start_run, wait_done
from tests.services import git

pytestmark = pytest.mark.integration
TITLES = ("write a.txt: alpha", "write b.txt: beta", "write c.txt: gamma")
AGENT = f"{sys.executable} -I {waiting_agent.__file__} {{prompt_file}} {{handoff_file}} {{api_base}}"


class HeldAgents:
    """The plan of `TITLES`; each waiting agent's question is held until `release()`."""

    def __init__(self):
        self.plan = single_item_plan(*TITLES)
        self.released = threading.Event()
        self.held = 0
        self.lock = threading.Lock()

    def release(self) -> None:
        self.released.set()

    def __call__(self, request: dict):
        if tool_names(request):
            return self.plan(request)
        assert "waiting agent" in prompt(request)
        with self.lock:
            self.held += 1
        self.released.wait(120)
        with self.lock:
            self.held -= 1
        return reply(content="ok")


def light_stack(cadre, server, **env: str):
    return cadre(server.base_url, CADRE_WORKER_BACKEND="command", CADRE_WORKER_COMMAND=AGENT,
                 CADRE_LEASE_SECONDS="3", CADRE_TICK_SECONDS="1", **env)


def claims(store, run_id: str, attempt: int = 1) -> list[dict]:
    return [e.data for e in store.events.read(run_id) if e.type == "item_claimed" and e.data["attempt"] == attempt]


def three_held_in_one_process(store, run_id: str, agents: HeldAgents, stack) -> int:
    """Wait until all three items are claimed by one process and their agents wait on the model; its pid."""
    wait_until(lambda: agents.held == 3 and len(claims(store, run_id)) == 3, 90,
               f"three agents did not start\n{stack.logs()}")
    pids = {int(c["worker"].rsplit(":", 1)[1]) for c in claims(store, run_id)}
    assert len(pids) == 1, f"one process runs the three slots: {pids}"
    return pids.pop()


def assert_each_landed_once(store, remote, run_id: str) -> list:
    items = [store.items.get(i) for i in store.items.ids_of_run(run_id)]
    assert sorted(i.title for i in items) == sorted(TITLES)
    for item in items:
        assert commits_with_trailer(remote, item.id) == [item.handoff.commit], item
    names = git("ls-tree", "--name-only", "main", cwd=remote).split()
    assert {"a.txt", "b.txt", "c.txt"} <= set(names)
    return items


@pytest.mark.parametrize("sandbox", ["bwrap", "off"])
def test_sigterm_hands_every_running_slot_over_with_its_work(cadre, remote, store, sandbox):
    agents = HeldAgents()
    with ScriptedModelServer(agents) as server:
        stack = light_stack(cadre, server, CADRE_SANDBOX=sandbox)
        start(stack, 0, beat=False)  # no reaper: the hand-over must be SIGTERM's own
        light = stack.worker("worker", 3)
        run_id = start_run(stack, remote)
        assert three_held_in_one_process(store, run_id, agents, stack) == light.process.pid, "threads, not a pool"
        assert "concurrency: 3 (thread)" in light.log(), light.log()[-2000:]
        os.kill(light.process.pid, signal.SIGTERM)
        sent_at = time.time()
        light.process.wait(timeout=30)
        stopped_after = time.time() - sent_at
        successor = stack.worker("worker", 3)
        agents.release()
        wait_done(store, run_id, stack)
    assert stopped_after < 15, f"the process stopped {stopped_after:.1f} s after SIGTERM"
    requeued = [e for e in store.events.read(run_id) if e.type == "item_requeued"]
    assert len(requeued) == 3 and all(e.at - sent_at < 15 for e in requeued), requeued
    for item in assert_each_landed_once(store, remote, run_id):
        assert [a.outcome for a in item.attempts] == ["interrupted", "landed"], item.attempts
        path = item.title.split()[1].rstrip(":")
        assert path in git("ls-tree", "--name-only", f"cadre/rescue/{item.id}/1", cwd=remote), "its work was kept"
        assert item.attempts[1].celery_hostname != item.attempts[0].celery_hostname
    assert successor.process.poll() is None


def test_a_killed_light_worker_loses_none_of_its_slots_items(cadre, remote, store):
    agents = HeldAgents()
    with ScriptedModelServer(agents) as server:
        stack = light_stack(cadre, server, CADRE_SANDBOX="off")
        start(stack, 0)
        light = stack.worker("worker", 3)
        run_id = start_run(stack, remote)
        three_held_in_one_process(store, run_id, agents, stack)
        os.killpg(light.process.pid, signal.SIGKILL)
        stack.worker("worker", 3)
        agents.release()
        wait_done(store, run_id, stack, timeout=180)
    for item in assert_each_landed_once(store, remote, run_id):
        assert [a.outcome for a in item.attempts] == ["lost", "landed"], item.attempts


def test_a_hard_time_limit_ends_its_own_slot_and_not_the_process(cadre, remote, store):
    """Two builtin agents share a threads worker. One waits on its model (a read no exception interrupts)
    past its hard limit (40 s): when the read returns, its task ends there; the process, and the other
    slot's agent, live on."""
    released = threading.Event()
    plan = single_item_plan("write s.txt: stuck", "write q.txt: quick")

    def policy(request: dict):
        if "write_file" in tool_names(request) and "Your task: write s.txt" in prompt(request):
            released.wait(120)
        return plan(request)

    with ScriptedModelServer(policy) as server:
        stack = cadre(server.base_url, CADRE_WORKER_TIME_LIMIT_SECONDS="40", CADRE_LEASE_SECONDS="3",
                      CADRE_TICK_SECONDS="1")
        start(stack, 0)
        light = stack.worker("worker", 2, "--pool", "threads")
        run_id = start_run(stack, remote)
        wait_until(lambda: re.search(r"passed its hard time limit \(40 s\): ending it", light.log()), 90,
                   f"no hard limit\n{stack.logs()}")
        released.set()
        wait_done(store, run_id, stack, timeout=120)
        assert light.process.poll() is None, light.log()[-3000:]
    items = {i.title: i for i in (store.items.get(x) for x in store.items.ids_of_run(run_id))}
    stuck, quick = items["write s.txt: stuck"], items["write q.txt: quick"]
    assert [a.outcome for a in quick.attempts] == ["landed"]
    assert len(stuck.attempts) == 2 and stuck.attempts[-1].outcome == "landed", stuck.attempts
    for item in (stuck, quick):
        assert commits_with_trailer(remote, item.id) == [item.handoff.commit]


def test_cancelling_one_slots_item_stops_only_its_agent(cadre, remote, store):
    """Three agents wait in one light worker; `cadre cancel` of one stops its program within seconds (the
    process's one watcher asks Redis about all its slots at once), its work on its rescue branch; the other
    two land when their model answers."""
    agents = HeldAgents()
    with ScriptedModelServer(agents) as server:
        stack = light_stack(cadre, server, CADRE_SANDBOX="off")
        start(stack, 0)
        stack.worker("worker", 3)
        run_id = start_run(stack, remote)
        three_held_in_one_process(store, run_id, agents, stack)
        items = {store.items.get(i).title: i for i in store.items.ids_of_run(run_id)}
        target = items["write b.txt: beta"]
        asked = time.monotonic()
        result = stack.cli("cancel", target)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: store.items.get(target).status.value == "cancelled", 30, stack.logs()[-3000:])
        stopped_after = time.monotonic() - asked
        others = [store.items.get(i) for t, i in items.items() if i != target]
        assert all(o.status.value == "running" for o in others), "only the cancelled item's agent stopped"
        agents.release()
        wait_until(lambda: store.runs.get(run_id).is_over, 120, stack.logs()[-3000:])
    cancelled = store.items.get(target)
    assert stopped_after < 10, f"cancelled after {stopped_after:.1f} s"
    assert git("show", f"{cancelled.handoff.rescue_branch}:b.txt", cwd=remote) == "beta"
    assert commits_with_trailer(remote, target) == []
    for title in ("write a.txt: alpha", "write c.txt: gamma"):
        item = store.items.get(items[title])
        assert commits_with_trailer(remote, item.id) == [item.handoff.commit], item
