"""Recursive sub-planners, wake-ups with handoffs, bounds, duplicates and the green-branch check."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from orchestrator.testing.scripted_model import ScriptedModelServer, call
from tests.integration.policies import prompt, tool_names
from tests.integration.test_cycle import remote_log, run_and_wait, start_stack
from tests.integration.tree_policies import CheckDrivenPlan, TreePlan, area_of, planner_round

pytestmark = pytest.mark.integration


def followups(server) -> dict[str, str]:
    """The first request of every wake-up round, by area ("" for the root)."""
    found = {}
    for request in server.requests:
        if "create_task" in tool_names(request) and planner_round(request) > 1:
            found.setdefault(area_of(request), prompt(request))
    return found


def test_three_level_tree_wakes_every_node_once_with_its_childrens_handoffs(cadre, remote, store):
    policy = TreePlan()
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, workers=3)
        stack.worker("planner")  # a second planner process: sub-planners plan in parallel
        result, run_id, status = run_and_wait(stack, remote, "Build the app.", timeout=240)
        wakeups = followups(server)
        judge_prompt = next(prompt(r) for r in server.requests if "verdict" in tool_names(r))
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    nodes = {n["id"]: n for n in status["nodes"]}
    assert sorted(n["depth"] for n in nodes.values()) == [0, 1, 1, 2]
    assert len(status["items"]) == 6 and all(t["commit"] for t in status["items"]), json.dumps(status["nodes"], indent=1) + stack.logs()[-3000:]
    assert len(remote_log(remote)) == 7
    events = store.events.read(run_id)
    woken = Counter(e.data["node_id"] for e in events if e.type == "node_woken")
    assert woken == {node_id: 1 for node_id in nodes}, "every node wakes exactly once"
    assert all(n["status"] == "done" for n in nodes.values())
    for node in nodes.values():
        mentioned = set(re.findall(r"(?:work item|sub-planner) ((?:item|node)-\w+)", wakeups[node["area"]]))
        assert mentioned == set(store.nodes.child_ids(node["id"])), node["area"]
    for task in status["items"]:
        assert task["id"] in judge_prompt
        assert store.items.get(task["id"]).handoff.findings == "the tree works"
    items = [store.items.get(t["id"]) for t in status["items"]]
    assert any(a.started_at < b.settled_at and b.started_at < a.settled_at
               for a in items for b in items if a.id < b.id), "items ran in parallel"


def test_bounds_and_duplicates_answer_with_observations(cadre, remote, store):
    duplicate = call("create_task", title="write x.txt: same", instructions="Create x.txt", scope="x")
    policy = TreePlan(areas=("one", "two"), deeper="one", extra_calls=(duplicate, duplicate))
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, workers=2, CADRE_MAX_DEPTH="1", CADRE_MAX_SUBPLANNERS_PER_NODE="1")
        result, run_id, status = run_and_wait(stack, remote, "Bounded tree.", timeout=240)
        observations = [m["content"] for r in server.requests for m in r["messages"] if m["role"] == "tool"]
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    assert any("maximum of 1 sub-planners" in o for o in observations)
    assert any("may nest 1 levels deep" in o for o in observations)
    assert any(o.startswith("error: refused: this repeats work item item-") for o in observations)
    assert sorted(n["depth"] for n in status["nodes"]) == [0, 1]
    assert len([t for t in status["items"] if t["title"] == "write x.txt: same"]) == 1


def test_failing_check_reaches_the_next_rounds_planner(cadre, remote, store):
    check = "test -f fixed.txt || { echo 'fixed.txt is missing'; exit 1; }"
    with ScriptedModelServer(CheckDrivenPlan()) as server:
        stack = start_stack(cadre, server, CADRE_CHECK_COMMAND=check)
        result, run_id, status = run_and_wait(stack, remote, "Keep the branch green.")
        rounds = [prompt(r) for r in server.requests if "create_task" in tool_names(r) and planner_round(r) > 1
                  and not any(m["role"] == "tool" for m in r["messages"])]
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    assert "FAILS on the branch head" in rounds[0] and "fixed.txt is missing" in rounds[0]
    assert "FAILS" not in rounds[1]
    checks = [e.data for e in store.events.read(run_id) if e.type == "check"]
    assert [c["passed"] for c in checks][:2] == [False, True] and checks[-1]["trigger"] == "judge"
    assert json.loads(stack.cli("status", run_id, "--json").stdout)["cycles"][0]["verdict"]["check_passed"] is True
