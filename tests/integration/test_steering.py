"""Steering a live run across two worker processes: pause, resume, drain, guidance, a budget lowered below
what is spent, cancel and retry of an item, approval of planned items; and each command's bad input."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.state.models import ItemStatus, PlannerNode, WorkItem, new_id
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import Gate, single_item_plan
from tests.integration.steering_policies import LoopingWorker, Recorder
from tests.integration.test_cli_errors import assert_one_line_error
from tests.services import git

pytestmark = pytest.mark.integration
LEASE_SECONDS = 5


def start(stack, remote, goal: str, *extra: str) -> str:
    result = stack.cli("run", "--repo", str(remote), "--goal", goal, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0].strip()


def status(stack, run_id: str) -> dict:
    return json.loads(stack.cli("status", run_id, "--json").stdout)


def said(result, *fragments: str) -> str:
    """The one line a steering command printed, checked to contain `fragments`."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), result.stdout
    return lines[0]


def show(step: str, data: dict) -> None:
    """Print the status fields steering changes (visible with `pytest -s`)."""
    view = {k: data[k] for k in ("status", "paused", "guidance", "budget")}
    view["items"] = {i["id"]: i["status"] + (" (parked)" if i["parked"] else "") for i in data["items"]}
    print(f"\n--- {step}\n{json.dumps(view, indent=1)}")


def stack_with_two_workers(cadre, base_url: str, **extra: str):
    stack = cadre(base_url, CADRE_LEASE_SECONDS=str(LEASE_SECONDS), **extra)
    stack.worker("planner")
    stack.worker("judge")
    stack.worker("worker", 2)  # two worker processes, three slots
    stack.worker("worker", 1)
    return stack


def claims(store, run_id: str) -> int:
    return sum(1 for e in store.events.read(run_id) if e.type == "item_claimed")


def test_a_paused_run_is_guided_rebudgeted_and_resumed(cadre, remote, store):
    titles = [f"write p{k}.txt: {k}" for k in range(5)]
    gate = Gate(single_item_plan(*titles))
    recorder = Recorder(gate)
    with ScriptedModelServer(recorder) as server:
        stack = stack_with_two_workers(cadre, server.base_url)
        run_id = start(stack, remote, "Write five files.")
        wait_until(lambda: gate.waiting >= 3, 120, "three items running at once\n" + stack.logs()[-3000:])
        said(stack.cli("pause", run_id), "paused")
        paused = status(stack, run_id)
        show("paused while three items run", paused)
        assert paused["status"] == "paused" and paused["paused"] is True
        assert sorted(i["status"] for i in paused["items"]) == ["queued", "queued", "running", "running", "running"]

        gate.open()  # the three running attempts finish and land; nothing new starts
        wait_until(lambda: sum(i["status"] == "done" for i in status(stack, run_id)["items"]) == 3, 120,
                   "the running attempts land while paused\n" + stack.logs()[-3000:])
        time.sleep(LEASE_SECONDS + 2)  # a full lease period
        held = status(stack, run_id)
        show("a lease period later", held)
        assert held["status"] == "paused" and claims(store, run_id) == 3, "nothing new started while paused"
        assert [i["status"] for i in held["items"] if i["status"] != "done"] == ["queued", "queued"]

        said(stack.cli("guide", run_id, "Keep every file to one line."), "planners and the judge")
        said(stack.cli("guide", run_id, "--to", "workers", "Workers: write plain ASCII only."), "workers")
        said(stack.cli("budget", run_id, "--max-cost", "50", "--max-cycles", "2"), "max_cost_usd", "max_cycles")
        guided = status(stack, run_id)
        show("guided and re-budgeted", guided)
        assert [(g["to"], g["text"]) for g in guided["guidance"]] == [
            ("planners", "Keep every file to one line."), ("workers", "Workers: write plain ASCII only.")]
        assert all("@" in g["by"] and g["at"] > 0 for g in guided["guidance"])
        assert guided["budget"]["max_cost_usd"] == 50 and guided["budget"]["max_cycles"] == 2

        resumed_at = time.monotonic()
        said(stack.cli("resume", run_id), "running again")
        wait_until(lambda: status(stack, run_id)["status"] == "done", 120, "the run ends done\n" + stack.logs()[-4000:])
    done = status(stack, run_id)
    show("resumed and done", done)
    assert all(i["status"] == "done" and i["commit"] for i in done["items"]) and claims(store, run_id) == 5
    assert sorted(git("ls-tree", "--name-only", "main", cwd=remote).split()) == sorted(
        ["README.md", "src", *(f"p{k}.txt" for k in range(5))])
    workers_after = recorder.prompts("worker", resumed_at)
    assert workers_after and all("Workers: write plain ASCII only." in p for p in workers_after)
    assert not any("Keep every file to one line." in p for p in workers_after), "planners' guidance is theirs"
    for kind in ("planner", "judge"):
        later = recorder.prompts(kind, resumed_at)
        assert later and all("Keep every file to one line." in p and "plain ASCII" not in p for p in later), kind
    events = [e.type for e in store.events.read(run_id)]
    assert {"run_paused", "guidance", "budget_changed", "run_resumed", "item_parked"} <= set(events)


def test_a_drained_run_ends_stopped_with_nothing_lost(cadre, remote, store):
    gate = Gate(single_item_plan(*(f"write d{k}.txt: {k}" for k in range(5))))
    with ScriptedModelServer(gate) as server:
        stack = stack_with_two_workers(cadre, server.base_url)
        run_id = start(stack, remote, "Write five files.")
        wait_until(lambda: gate.waiting >= 3, 120, "three items running\n" + stack.logs()[-3000:])
        said(stack.cli("drain", run_id), "draining")
        assert status(stack, run_id)["status"] == "draining"
        gate.open()
        wait_until(lambda: status(stack, run_id)["status"] == "stopped", 120, "drained\n" + stack.logs()[-3000:])
    drained = status(stack, run_id)
    landed = [i for i in drained["items"] if i["status"] == "done"]
    assert len(landed) == 3 and all(i["commit"] for i in landed) and claims(store, run_id) == 3
    assert sorted(i["status"] for i in drained["items"] if i not in landed) == ["cancelled", "cancelled"]
    on_main = git("log", "--format=%(trailers:key=Cadre-Item,valueonly)", "main", cwd=remote).split()
    assert sorted(on_main) == sorted(i["id"] for i in landed), "every attempt that ran landed: 0 lost"
    assert "drained" in drained["reason"]


def test_a_budget_lowered_below_spend_ends_the_run_and_no_model_call_follows(cadre, remote, store):
    recorder = Recorder(LoopingWorker("write b.txt: budget"))
    with ScriptedModelServer(recorder) as server:
        stack = stack_with_two_workers(cadre, server.base_url)
        run_id = start(stack, remote, "Loop until stopped.")
        wait_until(lambda: recorder.count("worker") >= 3, 120, "the worker loops\n" + stack.logs()[-3000:])
        spent = status(stack, run_id)["budget"]["spent"]["tokens"]
        line = said(stack.cli("budget", run_id, "--max-tokens", "10"), "budget_exhausted")
        cut = time.monotonic()
        assert spent > 10, line
        time.sleep(4)
        ended = status(stack, run_id)
    assert ended["status"] == "budget_exhausted" and "tokens budget spent" in ended["reason"]
    assert recorder.count("worker", cut) == 0 and recorder.count("planner", cut) == 0, "no model call after"


def test_cancel_keeps_the_work_on_a_rescue_branch_and_retry_lands_it(cadre, remote, store):
    policy = LoopingWorker("write k.txt: kept")
    recorder = Recorder(policy)
    with ScriptedModelServer(recorder) as server:
        stack = stack_with_two_workers(cadre, server.base_url)
        run_id = start(stack, remote, "Write k.txt.")
        wait_until(lambda: recorder.count("worker") >= 3, 120, "the worker wrote and loops\n" + stack.logs()[-3000:])
        [item] = status(stack, run_id)["items"]
        said(stack.cli("cancel", item["id"]), "is running", "rescue branch")
        wait_until(lambda: store.items.get(item["id"]).status is ItemStatus.CANCELLED, 60,
                   "the agent stops at its next step\n" + stack.logs()[-3000:])
        cancelled = store.items.get(item["id"])
        assert git("show", f"{cancelled.handoff.rescue_branch}:k.txt", cwd=remote) == "kept"
        # Its planner sees the outcome: the node's follow-up round (held by the policy) lists it cancelled.
        wait_until(lambda: any("This is round" in p for p in recorder.prompts("planner")), 60, "planner woken")
        follow_up = next(p for p in recorder.prompts("planner") if "This is round" in p)
        assert item["id"] in follow_up and "cancelled" in follow_up and cancelled.handoff.rescue_branch in follow_up
        policy.finish_next.set()
        said(stack.cli("retry", item["id"]), "queued again")
        wait_until(lambda: store.items.get(item["id"]).status is ItemStatus.DONE, 90, "the retry lands\n"
                   + stack.logs()[-3000:])
        policy.release_planner.set()
        wait_until(lambda: status(stack, run_id)["status"] == "done", 90, "done\n" + stack.logs()[-3000:])
    retried = store.items.get(item["id"])
    assert [a.outcome.value for a in retried.attempts] == ["rescued", "landed"]
    assert git("show", f"{retried.handoff.commit}:k.txt", cwd=remote) == "kept"
    assert git("merge-base", "--is-ancestor", retried.handoff.commit, "main", cwd=remote) == ""


def test_planned_items_wait_for_approval_and_a_rejection_reaches_the_planner(cadre, remote, store):
    recorder = Recorder(single_item_plan("write a1.txt: one", "write a2.txt: two", "write a3.txt: three",
                                         "write a4.txt: four"))
    with ScriptedModelServer(recorder) as server:
        stack = stack_with_two_workers(cadre, server.base_url)
        run_id = start(stack, remote, "Write four files.", "--approve-plans")
        wait_until(lambda: len(status(stack, run_id)["items"]) == 4, 90, "planned\n" + stack.logs()[-3000:])
        time.sleep(3)
        waiting = status(stack, run_id)
        assert [i["status"] for i in waiting["items"]] == ["awaiting_approval"] * 4 and waiting["approve_plans"]
        assert recorder.count("worker") == 0, "nothing starts before approval"
        first, second, third, fourth = (i["id"] for i in waiting["items"])
        said(stack.cli("approve", run_id, first, second), "2 items approved")
        said(stack.cli("reject", run_id, third, "--reason", "not needed now"), "1 items rejected")
        said(stack.cli("cancel", fourth), "cancelled before it started")
        wait_until(lambda: status(stack, run_id)["status"] == "done", 120, "done\n" + stack.logs()[-3000:])
    final = {i["id"]: i for i in status(stack, run_id)["items"]}
    assert final[first]["commit"] and final[second]["commit"]
    assert final[third]["status"] == final[fourth]["status"] == "cancelled" and not final[third]["commit"]
    follow_up = next(p for p in recorder.prompts("planner") if "This is round" in p)
    assert "not needed now" in follow_up and third in follow_up, "the planner is told why"


def test_each_steering_command_refuses_bad_input_with_one_line(cadre, remote, store, tmp_path):
    stack = cadre("http://127.0.0.1:9/v1")  # no worker runs: the run stays as the commands leave it
    run_id = start(stack, remote, "Nothing runs.")
    root = store.cycles.get(run_id, 1).root_node_id
    assert store.nodes.start(root, run_id) is not None
    item = WorkItem(id=new_id("item"), run_id=run_id, cycle=1, node_id=root, title="t", instructions="i")
    assert store.items.add(item, 30) == "" and store.nodes.finish_planning(root, "planned one item")
    for command in ("pause", "resume", "drain", "approve"):
        assert_one_line_error(stack.cli(command, "run-nope"), "unknown run id run-nope")
    for command in ("retry", "cancel"):
        assert_one_line_error(stack.cli(command, "item-nope"), "unknown work item item-nope")
    assert_one_line_error(stack.cli("resume", run_id), "not paused or draining")
    assert_one_line_error(stack.cli("guide", run_id, "  "), "guidance is empty")
    assert_one_line_error(stack.cli("guide", run_id, "x", "--to", "judges"), "--to must be one of")
    assert_one_line_error(stack.cli("guide", run_id), "as TEXT or with --file")
    assert_one_line_error(stack.cli("guide", run_id, "--file", str(tmp_path / "none.txt")), "cannot read")
    assert_one_line_error(stack.cli("budget", run_id), "give at least one of")
    assert_one_line_error(stack.cli("budget", run_id, "--max-cost", "-1"), "--max-cost must be greater than 0")
    assert_one_line_error(stack.cli("budget", run_id, "--max-cycles", "0"), "--max-cycles must be greater than 0")
    assert_one_line_error(stack.cli("retry", item.id), "only a failed or cancelled item can be retried")
    assert_one_line_error(stack.cli("approve", run_id, item.id), "not awaiting approval")
    assert_one_line_error(stack.cli("approve", run_id, "item-nope"), "has no work item item-nope")
    assert_one_line_error(stack.cli("reject", run_id, item.id), "--reason is required")
    assert_one_line_error(stack.cli("reject", run_id, "--reason", "no"), "name the items to reject")
    said(stack.cli("pause", run_id), "paused")
    assert_one_line_error(stack.cli("pause", run_id), "is paused, not running")
    said(stack.cli("drain", run_id), "drained", "stopped")  # nothing ran: it ends at once
    assert store.items.get(item.id).status is ItemStatus.CANCELLED
    assert_one_line_error(stack.cli("drain", run_id), "has ended (stopped)")
    assert_one_line_error(stack.cli("guide", run_id, "late"), "has ended")
    assert_one_line_error(stack.cli("budget", run_id, "--max-cost", "5"), "has ended")
    assert isinstance(store.nodes.get(root), PlannerNode)
