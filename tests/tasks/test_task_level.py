"""Each role's task on a real Redis broker, in-process (Celery's test worker): routing, the readable label
Flower shows, duplicate and stale deliveries dropped, and one work item carried out end to end."""

from __future__ import annotations

import pytest
from celery.signals import task_postrun, task_received

from orchestrator.queues.dispatch import dispatch_judge, dispatch_planner, dispatch_work_item
from orchestrator.queues.inspection import waiting_args
from orchestrator.queues.names import (
    CHECK_BRANCH,
    EXECUTE_WORK_ITEM,
    JUDGE_CYCLE,
    PLAN_NODE,
    SWEEP_PENDING_REFS,
    TICK,
)
from orchestrator.state.keys import Keys
from orchestrator.state.models import Cycle, CycleStatus, ItemStatus, NodeStatus, PlannerNode, Run, Verdict, WorkItem
from orchestrator.state.store import get_store
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import single_item_plan
from tests.services import git
from tests.tasks.conftest import configure_models

pytestmark = pytest.mark.integration
ROUTES = {PLAN_NODE: "plan", EXECUTE_WORK_ITEM: "work", CHECK_BRANCH: "work", SWEEP_PENDING_REFS: "work",
          JUDGE_CYCLE: "judge", TICK: "judge"}


def records(remote: str = "/nowhere.git", item_status: ItemStatus = ItemStatus.QUEUED, attempt: int = 0):
    """A run with its first cycle, root node and one work item, stored; returns (run, node, item)."""
    store = get_store()
    run = Run(id="run-task", repo=remote, branch="main", goal="task-level", max_cycles=1)
    node = PlannerNode(id="node-task", run_id=run.id, cycle=1, status=NodeStatus.WAITING)
    store.runs.create(run, Cycle(run_id=run.id, number=1, root_node_id=node.id), node)
    item = WorkItem(id="item-task", run_id=run.id, cycle=1, node_id=node.id, title="write task.txt: in-process",
                    instructions="Write it.", status=item_status, attempt=attempt)
    store.redis.set(Keys.item(item.id), item.model_dump_json())
    store.redis.rpush(Keys.run_items(run.id), item.id)
    store.redis.sadd(Keys.node_pending(node.id), item.id)
    return run, node, item


def test_each_task_is_routed_to_its_queue(cadre_app):
    for name, queue in ROUTES.items():
        assert cadre_app.amqp.router.route({}, name)["queue"].name == queue, name
    run, node, item = records()
    dispatch_work_item(item)
    dispatch_planner(node)
    dispatch_judge(run.id, 1)
    redis = get_store().redis
    assert waiting_args(redis, "work", EXECUTE_WORK_ITEM) == {(item.id,)}
    assert waiting_args(redis, "plan", PLAN_NODE) == {(node.id,)}
    assert waiting_args(redis, "judge", JUDGE_CYCLE) == {(run.id, 1)}


def test_the_label_flower_shows_names_run_cycle_item_and_title(cadre_app):
    _run, _node, item = records(item_status=ItemStatus.DONE)
    received = []

    def remember(request=None, **_kwargs) -> None:
        received.append((request.name, request.argsrepr))

    task_received.connect(remember, weak=False)
    try:
        from celery.contrib.testing.worker import start_worker

        with start_worker(cadre_app, pool="threads", concurrency=1, queues=["work"], perform_ping_check=False,
                          shutdown_timeout=30, loglevel="WARNING"):
            dispatch_work_item(item)
            wait_until(lambda: received, 30, "the worker never received the task")
    finally:
        task_received.disconnect(remember)
    [(name, label)] = received
    assert name == EXECUTE_WORK_ITEM
    assert label == f"run-task · cycle 1 · {item.id} · write task.txt: in-process"


def test_a_duplicate_delivery_of_a_settled_item_is_dropped(task_worker):
    run, _node, item = records(item_status=ItemStatus.DONE, attempt=1)
    dispatch_work_item(item)
    store = get_store()
    wait_until(lambda: any(e.type == "delivery_dropped" for e in store.events.read(run.id)), 30, "not dropped")
    assert store.items.get(item.id).status is ItemStatus.DONE and store.items.get(item.id).attempt == 1


def test_a_stale_delivery_for_a_running_attempt_is_dropped(task_worker):
    run, _node, item = records(item_status=ItemStatus.RUNNING, attempt=2)
    store = get_store()
    store.redis.set(Keys.lease(item.id), 2, ex=60)  # attempt 2 runs elsewhere; attempt 1's message comes late
    dispatch_work_item(item)
    wait_until(lambda: any(e.type == "delivery_dropped" for e in store.events.read(run.id)), 30, "not dropped")
    after = store.items.get(item.id)
    assert (after.status, after.attempt, store.items.lease_holder(item.id)) == (ItemStatus.RUNNING, 2, 2)


def test_late_planner_and_judge_deliveries_are_dropped(task_worker):
    run, node, _item = records()
    store = get_store()
    store.cycles.begin_judging(run.id, 1)
    store.cycles.close(run.id, 1, Verdict(done=True, reason="judged already"))
    finished = []
    remember = lambda sender=None, **_kw: finished.append(sender.name)  # noqa: E731
    task_postrun.connect(remember, weak=False)
    try:
        dispatch_planner(node)  # the node is waiting, not pending: a duplicate
        dispatch_judge(run.id, 1)  # the cycle is closed: a late delivery
        wait_until(lambda: sorted(finished) == [JUDGE_CYCLE, PLAN_NODE], 30, f"tasks finished: {finished}")
    finally:
        task_postrun.disconnect(remember)
    assert store.nodes.get(node.id).status is NodeStatus.WAITING
    assert store.cycles.get(run.id, 1).status is CycleStatus.CLOSED
    assert store.cycles.get(run.id, 1).verdict.reason == "judged already"


def test_a_judge_delivery_while_another_judge_holds_the_cycle_is_dropped(task_worker):
    run, _node, _item = records()
    store = get_store()
    store.cycles.begin_judging(run.id, 1)
    store.redis.set(Keys.judge_lease(run.id, 1), "another-judge", ex=60)
    dispatch_judge(run.id, 1)
    wait_until(lambda: any(e.type == "delivery_dropped" for e in store.events.read(run.id)), 30, "not dropped")
    assert store.cycles.get(run.id, 1).status is CycleStatus.JUDGING


def test_a_work_item_is_carried_out_end_to_end_in_process(cadre_app, remote, monkeypatch):
    with ScriptedModelServer(single_item_plan()) as server:
        configure_models(monkeypatch, server.base_url)
        run, _node, item = records(str(remote))
        from celery.contrib.testing.worker import start_worker

        with start_worker(cadre_app, pool="threads", concurrency=1, queues=["work"], perform_ping_check=False,
                          shutdown_timeout=60, loglevel="WARNING"):
            dispatch_work_item(item)
            wait_until(lambda: get_store().items.get(item.id).status is not ItemStatus.QUEUED
                       and get_store().items.get(item.id).status is not ItemStatus.RUNNING, 120, "item not settled")
    settled = get_store().items.get(item.id)
    assert settled.status is ItemStatus.DONE and settled.handoff.commit
    assert git("show", "main:task.txt", cwd=remote) == "in-process"
    assert settled.attempts[0].celery_hostname, "recorded as run by Celery's test worker node"
