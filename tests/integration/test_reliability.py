"""Lose nothing, land nothing twice: killed, stopped and frozen workers, duplicates, Redis restarts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from orchestrator.config.settings import CadreSettings
from orchestrator.queues.app import make_celery
from orchestrator.queues.names import EXECUTE_WORK_ITEM
from orchestrator.state.models import RunStatus
from orchestrator.state.records import connect
from orchestrator.state.store import Store
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import Gate, keep_both_sides_on_conflict, single_item_plan
from tests.services import RedisServer, git

pytestmark = pytest.mark.integration
FAST = {"CADRE_LEASE_SECONDS": "3", "CADRE_TICK_SECONDS": "1"}


def start(stack, workers: int, beat: bool = True) -> list:
    stack.worker("planner")
    stack.worker("judge")
    if beat:
        stack.beat()
    return [stack.worker("worker") for _ in range(workers)]


def start_run(stack, remote, goal="edit files") -> str:
    result = stack.cli("run", "--repo", str(remote), "--goal", goal)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


@dataclass
class GatedRun:
    """A run of one item whose worker waits at the gate, with its stack, worker processes and claim."""

    gate: Gate
    stack: object
    workers: list
    run_id: str
    claim: dict


@contextmanager
def gated_run(cadre, remote, store, title: str, workers: int = 2, beat: bool = True,
              **env: str) -> Iterator[GatedRun]:
    """Start a stack and a one-item run, and wait until a worker has claimed the item and waits at the gate."""
    gate = Gate(single_item_plan(title))
    with ScriptedModelServer(gate) as server:
        stack = cadre(server.base_url, **(env or FAST))
        processes = start(stack, workers, beat)
        run_id = start_run(stack, remote)
        claim = wait_until(lambda: gate.waiting and claim_of(store, run_id), 60, "no claim")
        yield GatedRun(gate, stack, processes, run_id, claim)


@contextmanager
def redis_outage(cadre, remote, tmp_path, seconds: float, titles: tuple[str, ...], env: dict,
                 agent_moves_while_down: bool = False):
    """A run on a Redis of its own that goes away for `seconds` while an agent works (waiting for its model,
    or, if `agent_moves_while_down`, getting its reply and going on at once); yields (store, run id, stack)
    once the run is done."""
    redis_server = RedisServer(tmp_path / "own-redis").start()
    try:
        store = Store(connect(redis_server.url))
        gate = Gate(single_item_plan(*titles))
        with ScriptedModelServer(gate) as server:
            stack = cadre(server.base_url, CADRE_REDIS_URL=redis_server.url, **env)
            start(stack, 2)
            run_id = start_run(stack, remote)
            wait_until(lambda: gate.waiting and claim_of(store, run_id), 60, "no claim")
            redis_server.stop()
            if agent_moves_while_down:
                gate.open()
            time.sleep(seconds)
            redis_server.start()
            gate.open()
            wait_done(store, run_id, stack, timeout=180)
        yield store, run_id, stack
    finally:
        redis_server.stop()


def claim_of(store: Store, run_id: str, attempt: int = 1) -> dict | None:
    for event in store.events.read(run_id):
        if event.type == "item_claimed" and event.data["attempt"] == attempt:
            return event.data
    return None


def process_running(workers, claim: dict):
    """The worker process whose process group contains the pid that made `claim`."""
    pid = int(claim["worker"].rsplit(":", 1)[1])
    group = os.getpgid(pid)
    return next(w for w in workers if w.process.pid == group)


def commits_with_trailer(remote, item_id: str) -> list[str]:
    return git("log", "--format=%H", "--fixed-strings", f"--grep=Cadre-Item: {item_id}", "main", cwd=remote).split()


def rescue_branches(remote, item_id: str) -> list[str]:
    return git("for-each-ref", "--format=%(refname:short)", f"refs/heads/cadre/rescue/{item_id}", cwd=remote).split()


def wait_done(store, run_id, stack, timeout=120):
    wait_until(lambda: store.runs.get(run_id).is_over, timeout,
               f"run did not end\n{stack.logs()}")
    assert store.runs.get(run_id).status is RunStatus.DONE, stack.logs()


def test_sigkilled_worker_group_lands_exactly_once_elsewhere(cadre, remote, store):
    with gated_run(cadre, remote, store, "write a.txt: survived") as run:
        os.killpg(process_running(run.workers, run.claim).process.pid, signal.SIGKILL)
        killed_at = time.time()
        run.gate.open()
        wait_done(store, run.run_id, run.stack)
    [item_id] = store.items.ids_of_run(run.run_id)
    item = store.items.get(item_id)
    assert item.attempt == 2 and item.handoff.commit
    assert [a.outcome for a in item.attempts] == ["lost", "landed"]
    assert commits_with_trailer(remote, item_id) == [item.handoff.commit]
    assert item.settled_at - killed_at < 120


def test_same_message_delivered_twice_lands_once(cadre, remote, store, redis_url):
    with gated_run(cadre, remote, store, "write b.txt: once") as run:
        run_id, gate, stack = run.run_id, run.gate, run.stack
        [item_id] = store.items.ids_of_run(run_id)
        client = make_celery(CadreSettings(redis_url=redis_url))
        client.send_task(EXECUTE_WORK_ITEM, args=[item_id])
        wait_until(lambda: any(e.type == "delivery_dropped" for e in store.events.read(run_id)), 60,
                   "duplicate not dropped")
        gate.open()
        wait_done(store, run_id, stack)
        client.send_task(EXECUTE_WORK_ITEM, args=[item_id])  # a late redelivery after it settled
        wait_until(lambda: sum(e.type == "delivery_dropped" for e in store.events.read(run_id)) == 2, 60, "late drop")
        client.close()
    assert store.items.get(item_id).attempt == 1
    assert len(commits_with_trailer(remote, item_id)) == 1


def test_zombie_attempt_never_pushes_and_keeps_its_work(cadre, remote, store):
    with gated_run(cadre, remote, store, "write c.txt: zombie") as run:
        run_id, gate, stack = run.run_id, run.gate, run.stack
        zombie = process_running(run.workers, run.claim)
        os.killpg(zombie.process.pid, signal.SIGSTOP)  # frozen: its lease lapses, the item is reassigned
        gate.open()
        wait_done(store, run_id, stack)
        [item_id] = store.items.ids_of_run(run_id)
        os.killpg(zombie.process.pid, signal.SIGCONT)
        wait_until(lambda: any(e.type == "stale_attempt" for e in store.events.read(run_id)), 60,
                   f"the zombie did not report\n{stack.logs()}")
    item = store.items.get(item_id)
    assert item.attempt == 2
    assert commits_with_trailer(remote, item_id) == [item.handoff.commit]
    assert rescue_branches(remote, item_id) == [f"cadre/rescue/{item_id}/1"]


def test_an_attempt_woken_after_its_lease_lapsed_goes_to_a_new_attempt_not_failed(cadre, remote, store):
    """A worker frozen past its lease wakes up before any reaper ran (no beat here) and finishes its agent:
    landing refuses the stale attempt, and the item must go to a new attempt that lands, not settle failed."""
    with gated_run(cadre, remote, store, "write s.txt: woke up late", beat=False) as run:
        frozen = process_running(run.workers, run.claim)
        os.killpg(frozen.process.pid, signal.SIGSTOP)
        [item_id] = store.items.ids_of_run(run.run_id)
        wait_until(lambda: store.items.lease_holder(item_id) is None, 30, "the lease did not lapse")
        run.gate.open()
        os.killpg(frozen.process.pid, signal.SIGCONT)
        wait_done(store, run.run_id, run.stack)
    item = store.items.get(item_id)
    assert item.status.value == "done" and item.attempt == 2, item.handoff
    assert [a.outcome for a in item.attempts] == ["lost", "landed"]
    assert commits_with_trailer(remote, item_id) == [item.handoff.commit]
    assert rescue_branches(remote, item_id) == [f"cadre/rescue/{item_id}/1"]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigterm_requeues_at_once_and_the_item_lands(cadre, remote, store, pool):
    # No reaper (long lease, no beat): the requeue must be immediate.
    with gated_run(cadre, remote, store, "write d.txt: handed over", beat=False, CADRE_LEASE_SECONDS="300",
                   CADRE_WORKER_POOL=pool) as run:
        run_id, gate, stack = run.run_id, run.gate, run.stack
        stopping = process_running(run.workers, run.claim)
        os.kill(stopping.process.pid, signal.SIGTERM)  # the main process only, as `docker stop` does
        sent_at = time.time()
        time.sleep(0.5)
        gate.open()
        wait_done(store, run_id, stack)
        stopping.process.wait(timeout=30)
    [item_id] = store.items.ids_of_run(run_id)
    requeued = [e for e in store.events.read(run_id) if e.type == "item_requeued"]
    assert len(requeued) == 1 and requeued[0].at - sent_at < 15
    assert requeued[0].data["rescue_branch"] == f"cadre/rescue/{item_id}/1", requeued[0].data
    assert "d.txt" in git("ls-tree", "--name-only", f"cadre/rescue/{item_id}/1", cwd=remote)
    item = store.items.get(item_id)
    assert item.attempt == 2 and commits_with_trailer(remote, item_id) == [item.handoff.commit]


def test_graceful_stops_do_not_use_up_attempts(cadre, remote, store):
    """Three rolling restarts during one item (with only two attempts allowed for failures): it still lands."""
    with gated_run(cadre, remote, store, "write h.txt: restarted", workers=4, beat=False,
                   CADRE_LEASE_SECONDS="300", CADRE_MAX_ATTEMPTS="2") as run:
        for attempt in (1, 2, 3):
            claim = wait_until(lambda a=attempt: run.gate.waiting >= a and claim_of(store, run.run_id, a), 60,
                               f"attempt {attempt} not claimed\n{run.stack.logs()}")
            os.kill(process_running(run.workers, claim).process.pid, signal.SIGTERM)
            time.sleep(0.5)
            run.gate.release_one()  # the stopping agent gets its reply, then stops at its next step
        wait_until(lambda: claim_of(store, run.run_id, 4), 60, f"attempt 4 not claimed\n{run.stack.logs()}")
        run.gate.open()
        wait_done(store, run.run_id, run.stack)
    [item_id] = store.items.ids_of_run(run.run_id)
    item = store.items.get(item_id)
    assert item.attempt == 4 and item.handoff.commit
    assert [a.outcome for a in item.attempts] == ["interrupted"] * 3 + ["landed"]
    assert all(a.host and a.celery_hostname.startswith("worker-") and a.ended_at for a in item.attempts)
    assert len({a.celery_hostname for a in item.attempts}) == 4, "each stopped worker handed the item to another"
    assert commits_with_trailer(remote, item_id) == [item.handoff.commit]
    requeued = [e for e in store.events.read(run.run_id) if e.type == "item_requeued"]
    assert len(requeued) == 3


def test_run_survives_a_redis_restart(cadre, remote, tmp_path):
    with redis_outage(cadre, remote, tmp_path, 2, ("write e.txt: persisted", "write f.txt: persisted too"),
                      FAST) as (store, run_id, _stack):
        for item_id in store.items.ids_of_run(run_id):
            assert len(commits_with_trailer(remote, item_id)) == 1


def test_a_ten_second_redis_outage_costs_no_running_agent_its_work(cadre, remote, tmp_path):
    """Redis goes away for 10 s while an agent works (default lease): the agent carries on and its attempt
    lands; nothing is cancelled, requeued or redone."""
    with redis_outage(cadre, remote, tmp_path, 10, ("write o.txt: outlived the outage",),
                      {"CADRE_TICK_SECONDS": "2"}) as (store, run_id, stack):
        [item_id] = store.items.ids_of_run(run_id)
        item = store.items.get(item_id)
        assert [a.outcome for a in item.attempts] == ["landed"], stack.logs()[-3000:]
        assert commits_with_trailer(remote, item_id) == [item.handoff.commit]


def test_an_agent_that_needs_redis_during_an_outage_waits_for_it_and_its_attempt_lands(cadre, remote, tmp_path):
    """The agent gets its model's reply while Redis is down and records it (usage, transcript) at once: the
    worker's pool process must wait for Redis (a patient client), not fail the attempt on the first refusal."""
    with redis_outage(cadre, remote, tmp_path, 10, ("write p.txt: waited for Redis",), {"CADRE_TICK_SECONDS": "2"},
                      agent_moves_while_down=True) as (store, run_id, stack):
        [item_id] = store.items.ids_of_run(run_id)
        item = store.items.get(item_id)
        assert [a.outcome for a in item.attempts] == ["landed"], stack.logs()[-3000:]
        assert commits_with_trailer(remote, item_id) == [item.handoff.commit]


def test_eight_workers_on_the_same_lines_lose_nothing(cadre, remote, store):
    titles = [f"append shared.txt: value from item {k}" for k in range(8)]
    policy = keep_both_sides_on_conflict(single_item_plan(*titles))
    with ScriptedModelServer(policy) as server:
        stack = cadre(server.base_url, CADRE_LEASE_SECONDS="30", CADRE_TICK_SECONDS="1")
        stack.worker("planner")
        stack.worker("judge")
        stack.worker("worker", 8)
        run_id = start_run(stack, remote)
        wait_done(store, run_id, stack, timeout=240)
    branch_text = git("show", "main:shared.txt", cwd=remote)
    for item in store.items.many(store.items.ids_of_run(run_id)):
        value = item.title.partition(": ")[2]
        landed = commits_with_trailer(remote, item.id)
        rescued = rescue_branches(remote, item.id)
        assert len(landed) <= 1, f"{item.id} landed twice"
        if landed:
            assert value in branch_text, f"{item.id} landed but its change was lost"
        else:
            assert rescued and any(value in git("show", f"{b}:shared.txt", cwd=remote) for b in rescued), \
                f"{item.id} neither landed nor rescued: {item.handoff}"


def test_attempts_are_bounded_and_the_parent_still_settles(cadre, remote, store):
    with gated_run(cadre, remote, store, "write g.txt: never", workers=1, CADRE_MAX_ATTEMPTS="1", **FAST) as run:
        os.killpg(process_running(run.workers, run.claim).process.pid, signal.SIGKILL)
        run.gate.open()
        wait_done(store, run.run_id, run.stack)
    [item_id] = store.items.ids_of_run(run.run_id)
    item = store.items.get(item_id)
    assert item.status.value == "failed" and "gave up after 1 attempts (1 failed, 0 interrupted)" in item.handoff.summary
    assert "worker lost" in item.handoff.summary

