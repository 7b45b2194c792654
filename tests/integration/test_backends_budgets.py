"""External agents, model errors, budgets and secret masking, on the real stack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.state.models import RunStatus
from orchestrator.testing.scripted_model import ScriptedError, ScriptedModelServer, call, reply
from tests.conftest import wait_until
from tests.integration.policies import single_item_plan, tool_names, tool_results
from tests.integration.test_cli_errors import assert_one_line_error
from tests.integration.test_cycle import remote_log, run_and_wait, start_stack

pytestmark = pytest.mark.integration
FAKE_AGENT = Path(__file__).parent / "fixtures" / "fake_agent.py"


@pytest.mark.parametrize("sandbox", ["bwrap", "off"])  # off: a plain process, no egress proxy in its way
def test_external_agent_lands_a_commit_with_its_handoff(cadre, remote, store, sandbox):
    command = f"{sys.executable} {FAKE_AGENT} {{prompt_file}} {{handoff_file}} {{api_base}}"
    with ScriptedModelServer(single_item_plan("write ext.txt: from outside")) as server:
        stack = start_stack(cadre, server, CADRE_WORKER_BACKEND="command", CADRE_WORKER_COMMAND=command,
                            CADRE_SANDBOX=sandbox)
        result, run_id, status = run_and_wait(stack, remote, "Use the external agent.")
        assert not any("write_file" in tool_names(r) for r in server.requests), "no builtin worker ran"
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    [task] = status["items"]
    handoff = store.items.get(task["id"]).handoff
    assert task["commit"], f"{status}\n{store.items.get(task['id'])}\n{stack.logs()}"
    assert handoff.summary == "fake agent wrote ext.txt" and handoff.findings == "it is fake; its model answered 200"
    assert handoff.tokens == 500 and handoff.usage_reported
    assert status["usage_by_role"]["worker"] == {"tokens": 500, "cost_usd": 0.05}
    assert len(remote_log(remote)) == 2 and status["worker_backend"] == "command"


def test_missing_agent_program_is_an_error_when_the_worker_starts(cadre):
    stack = cadre("http://127.0.0.1:9/v1", CADRE_WORKER_BACKEND="claude-code", PATH="/usr/bin:/bin")
    assert_one_line_error(stack.cli("worker", "--role", "worker"), "needs the program 'claude'")


def test_cost_budget_ends_the_run_and_nothing_is_dispatched_after(cadre, remote, store):
    def policy(request):
        names = tool_names(request)
        if "create_task" in names:  # one new item per step, for as long as the planner may go on
            step = len(tool_results(request))
            return reply(call("create_task", title=f"write f{step}.txt: {step}", instructions=f"file {step}"))
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="fine"))
        return single_item_plan()(request)

    price = "[100, 100]"  # USD per million tokens: a few cents per call here
    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, workers=2, CADRE_PLANNER_PRICE_PER_MTOK=price,
                            CADRE_WORKER_PRICE_PER_MTOK=price, CADRE_JUDGE_PRICE_PER_MTOK=price)
        result, run_id, status = run_and_wait(stack, remote, "Spend money.", "--max-cost", "0.5")
    assert result.returncode != 0
    assert status["status"] == "budget_exhausted" and "cost budget spent" in status["reason"]
    assert 0.5 <= status["cost_usd"] < 0.5 + 0.2, "at most one call past the budget per running agent"
    events = store.events.read(run_id)
    ended = next(i for i, e in enumerate(events) if e.type == "run_ended")
    assert any(e.type == "budget_warning" for e in events[:ended])
    late = [e.type for e in events[ended:] if e.type in {"item_created", "item_claimed", "node_started", "node_created"}]
    assert late == [], late
    # Agents that were running stop at their next step: every item settles soon after the end.
    wait_until(lambda: all(store.items.get(t["id"]).status.value in {"done", "failed"} for t in status["items"]), 60,
               "items still running after the budget ended the run")


def test_rate_limit_is_retried(cadre, remote, store):
    calls = {"worker": 0}
    base = single_item_plan("write r.txt: retried")

    def rate_limited_once(request):
        if "write_file" in tool_names(request):
            calls["worker"] += 1
            if calls["worker"] == 1:
                return ScriptedError(429, "slow down", type="rate_limit_error")
        return base(request)

    with ScriptedModelServer(rate_limited_once) as server:
        stack = start_stack(cadre, server, CADRE_MODEL_RETRIES="2")
        result, run_id, status = run_and_wait(stack, remote, "Survive a rate limit.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    assert status["items"][0]["commit"] and calls["worker"] >= 3


def test_auth_error_stops_the_run_with_one_clear_line(cadre, remote, store):
    base = single_item_plan("write r.txt: never")

    def unauthorised(request):
        if "write_file" in tool_names(request):
            return ScriptedError(401, "invalid api key", type="authentication_error")
        return base(request)

    with ScriptedModelServer(unauthorised) as server:
        stack = start_stack(cadre, server, CADRE_MODEL_RETRIES="2")
        result, run_id, status = run_and_wait(stack, remote, "Fail on a bad key.")
        worker_calls = sum("write_file" in tool_names(r) for r in server.requests)
    assert result.returncode != 0
    assert status["status"] == "failed" and "AuthenticationError" in status["reason"]
    assert "\n" not in status["reason"] and worker_calls == 1, "no retry loop on an auth error"
    assert store.runs.get(run_id).status is RunStatus.FAILED


def test_no_secret_reaches_transcripts_logs_or_events(cadre, remote, store, tmp_path):
    secret = "tok-5ecret-value-that-must-not-leak"

    def leaky(request):
        if "write_file" in tool_names(request) and not tool_results(request):
            return reply(call("bash", command="echo token=$SERVICE_ACCESS_TOKEN; env | grep -i token"),
                         content=f"I found the token {secret} in the environment")
        if "write_file" in tool_names(request):
            return reply(call("finish", summary=f"done; the key was {secret}"))
        return single_item_plan("write s.txt: secret test")(request)

    with ScriptedModelServer(leaky) as server:
        stack = start_stack(cadre, server, SERVICE_ACCESS_TOKEN=secret)
        result, run_id, status = run_and_wait(stack, remote, "Do not leak secrets.")
        observations = [m["content"] for r in server.requests for m in r["messages"] if m["role"] == "tool"]
    assert result.returncode == 0, stack.logs()
    assert not any(secret in o for o in observations), "agent commands must not see secret variables"
    transcripts = list((stack.data_dir / "transcripts").rglob("*.jsonl"))
    assert transcripts and not any(secret in p.read_text() for p in transcripts)
    assert "***" in "".join(p.read_text() for p in transcripts)
    assert secret not in stack.logs() and "sk-test-not-a-real-key-123" not in stack.logs()
    raw_events = store.redis.xrange(f"cadre:run:{run_id}:events")
    assert not any(secret in fields["event"] for _id, fields in raw_events)


def test_the_builtin_agent_at_its_step_limit_hands_off_partial_never_done(cadre, remote, store):
    def policy(request):
        names = tool_names(request)
        if "write_file" in names:  # a worker that never calls finish: one more line per step
            return reply(call("bash", command=f"echo step {len(tool_results(request))} >> half.txt"))
        return single_item_plan("write half.txt: never finished")(request)

    with ScriptedModelServer(policy) as server:
        stack = start_stack(cadre, server, CADRE_WORKER_MAX_STEPS="3")
        result, run_id, status = run_and_wait(stack, remote, "Run out of steps.")
    [task] = status["items"]
    handoff = store.items.get(task["id"]).handoff
    assert task["status"] == "failed" and task["commit"] is None and handoff.status.value == "partial"
    assert "its step limit (3 steps)" in handoff.summary and handoff.rescue_branch == f"cadre/rescue/{task['id']}/1"
    assert "half.txt" not in remote_log(remote)[0] and len(remote_log(remote)) == 1, "nothing landed"
