"""A "done" you can trust: protected paths never change on the branch, stalled agents are stopped within their
limits, and a run's efficiency figures match what the test counts itself."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from orchestrator.state.models import ItemStatus
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.integration.done_you_can_trust_policies import TOKENS_PER_REPLY, Counted
from tests.integration.test_cycle import run_and_wait, start_stack
from tests.services import git, make_remote

pytestmark = pytest.mark.integration
FAKE_AGENT = Path(__file__).parent / "fixtures" / "fake_agent.py"


def test_a_worker_that_edits_a_protected_test_is_refused_and_the_check_still_runs_the_original(cadre, store,
                                                                                                tmp_path):
    remote = make_remote(tmp_path / "git", {"app.txt": "broken\n", "tests/test_app.sh": "grep -q fixed app.txt\n"})
    policy = Counted("protected:write tests/test_app.sh: true")
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server)
        result, run_id, status = run_and_wait(stack, remote, "Make the tests pass.", "--protect", "tests/*",
                                              "--check", "sh tests/test_app.sh", "--max-cycles", "1")
    [item] = status["items"]
    record = store.items.get(item["id"])
    assert item["status"] == "refused" and not item["commit"], f"{record}\n{stack.logs()[-3000:]}"
    assert "protected paths (tests/test_app.sh)" in record.handoff.summary
    assert git("show", f"{record.handoff.rescue_branch}:tests/test_app.sh", cwd=remote) == "true"
    assert git("show", "main:tests/test_app.sh", cwd=remote) == "grep -q fixed app.txt", "the branch kept the test"
    assert status["status"] == "max_cycles" and result.returncode != 0, "the run does not end done on it"
    checks = store.redis.lrange(f"cadre:run:{run_id}:checks", 0, -1)
    assert checks and all('"passed": false' in c for c in checks), "the judge's check ran the original test"
    assert any("refused: this run protects tests/*" in r for r in policy.planner_results), "planners told no"
    assert status["protect"] == ["tests/*"] and status["efficiency"]["refused"] == 1
    report = stack.cli("report", run_id).stdout
    assert "refused: 1" in report and "## Efficiency" in report


def test_a_looping_agent_is_stalled_once_and_its_continuation_lands(cadre, remote, store):
    policy = Counted("write-then-loop w.txt: started")
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, CADRE_STALL_REPEATS="3")
        result, run_id, status = run_and_wait(stack, remote, "Write w.txt.")
    assert result.returncode == 0, stack.logs()[-3000:]
    stalled = next(store.items.get(i["id"]) for i in status["items"] if i["status"] == "stalled")
    assert policy.calls["write-then-loop w.txt: started"] == 1 + 3, "stopped after 3 identical calls, no more"
    assert "same tool call 3 times in a row" in stalled.handoff.summary
    assert git("show", f"{stalled.handoff.rescue_branch}:w.txt", cwd=remote) == "started"
    continuations = [store.items.get(i["id"]) for i in status["items"] if store.items.get(i["id"]).continues]
    assert [c.continues for c in continuations] == [stalled.id] and stalled.continued_by == continuations[0].id
    assert continuations[0].status is ItemStatus.DONE
    landed = continuations[0].handoff.commit
    assert git("show", f"{landed}:w.txt", cwd=remote) == "started" and git("show", f"{landed}:continued.txt",
                                                                           cwd=remote) == "continued"
    assert status["efficiency"]["stalled"] == 1
    assert any(e.type == "stalled" for e in store.events.read(run_id))


def test_an_external_agent_that_hangs_without_output_is_stalled_after_its_limit(cadre, remote, store):
    command = f"{sys.executable} {FAKE_AGENT} {{prompt_file}} {{handoff_file}}"
    with ScriptedModelServer(Counted("hang quietly")) as server:
        stack = start_stack(cadre, server, CADRE_WORKER_BACKEND="command", CADRE_WORKER_COMMAND=command,
                            CADRE_STALL_SECONDS="10")
        began = time.monotonic()
        result, run_id, status = run_and_wait(stack, remote, "Hang.")
        took = time.monotonic() - began
    [item] = status["items"]
    record = store.items.get(item["id"])
    assert item["status"] == "stalled", f"{record}\n{stack.logs()[-3000:]}"
    assert "no output and no change in its worktree for" in record.handoff.summary
    assert took < 90, f"stalled after about 10 s, not at the time limit ({took:.0f} s for the whole run)"
    assert record.continued_by is None, "nothing changed: nothing to continue from"


def test_the_efficiency_block_matches_what_the_test_counts(cadre, remote, store):
    policy = Counted("write e1.txt: one", "write e2.txt: two", "loop", "write tests/t.sh: true")
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, workers=2, CADRE_STALL_REPEATS="3")
        result, run_id, status = run_and_wait(stack, remote, "Write two files.", "--protect", "tests/*")
        requests = len(server.requests)
    items = {i["title"]: store.items.get(i["id"]) for i in status["items"]}
    assert items["loop"].status is ItemStatus.STALLED and items["write tests/t.sh: true"].status is ItemStatus.REFUSED
    block = status["efficiency"]
    # Counted here: every reply is TOKENS_PER_REPLY tokens; the landed items took 2 worker calls each.
    total = requests * TOKENS_PER_REPLY
    wasted = (policy.calls["loop"] + policy.calls["write tests/t.sh: true"]) * TOKENS_PER_REPLY
    assert status["tokens"] == total and policy.calls["write e1.txt: one"] == policy.calls["write e2.txt: two"] == 2
    assert block["landed"] == 2 and block["items"] == 4
    assert block["tokens_per_landed_item"] == total / 2
    assert block["wasted_tokens"] == wasted and block["wasted_share"] == round(wasted / total, 4)
    assert block["stalled"] == 1 and block["refused"] == 1 and block["conflicts"] == 0 and block["reworks"] == 0
    assert block["rescues"] == 1, "the refused commit's rescue branch (the loop changed nothing)"
    to_land = sorted(items[t].settled_at - items[t].created_at for t in ("write e1.txt: one", "write e2.txt: two"))
    assert block["time_to_land_p50_s"] == round(to_land[0], 3) and block["time_to_land_p95_s"] == round(to_land[1], 3)
    hours = (status["ended_at"] - status["created_at"]) / 3600
    assert block["landings_per_hour"] == round(2 / hours, 3)
    [cycle] = block["cycles"]
    assert cycle["landed"] == 2 and cycle["verdict"] == "done" and cycle["wasted_tokens"] == wasted
