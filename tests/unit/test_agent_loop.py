"""The builtin agent loop with real litellm calls to the scripted model server."""

from __future__ import annotations

import json

import pytest

from orchestrator.agent.commands import shell_for
from orchestrator.agent.loop import AgentLoop, Tool, Transcript, params, truncate
from orchestrator.agent.tools import WorkspaceTools
from orchestrator.config.settings import CadreSettings
from orchestrator.testing.scripted_model import ScriptedModelServer, ToolCall, call, reply


def make_loop(server, tmp_path, tools, max_steps=6, output_limit=2000, price=None):
    from orchestrator.agent.model_access import LiteLLMModel

    settings = CadreSettings(worker_model="openai/scripted-unpriced", worker_api_base=server.base_url,
                             api_key="sk-test-key-000", worker_price_per_mtok=price, data_dir=tmp_path)
    return AgentLoop(model=LiteLLMModel(settings, "worker"), tools=tools, max_steps=max_steps,
                     output_limit=output_limit, transcript=Transcript(tmp_path / "t.jsonl"))


def finish_tool() -> Tool:
    return Tool("finish", "end", params(["summary"], summary="s"), lambda a: "finished", terminal=True)


def observations(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def test_several_tool_calls_in_one_reply_run_in_order(tmp_path):
    seen: list[str] = []
    record = Tool("record", "record a word", params(["word"], word="w"), lambda a: seen.append(a["word"]) or "ok")

    def policy(request):
        if not observations(request):
            return reply(call("record", word="one"), call("record", word="two"), call("record", word="three"))
        return reply(call("finish", summary="recorded"))

    with ScriptedModelServer(policy) as server:
        result = make_loop(server, tmp_path, [record, finish_tool()]).run("system", "task")
        assert observations(server.requests[1]) == ["ok", "ok", "ok"]
    assert seen == ["one", "two", "three"]
    assert result.status == "finished" and result.final_arguments == {"summary": "recorded"}
    assert result.steps == 2 and result.prompt_tokens > 0 and result.completion_tokens > 0


def test_malformed_arguments_and_unknown_tools_go_back_to_the_model(tmp_path):
    def policy(request):
        if not observations(request):
            return reply(ToolCall("finish", '{"summary": "oops'), ToolCall("teleport", {"to": "mars"}),
                         ToolCall("finish", {}))
        return reply(call("finish", summary="fixed"))

    with ScriptedModelServer(policy) as server:
        result = make_loop(server, tmp_path, [finish_tool()]).run("system", "task")
        first, second, third = observations(server.requests[1])
    assert first.startswith("error: arguments are not valid JSON")
    assert second == "error: unknown tool 'teleport'"
    assert third == "error: finish is missing required argument(s): summary"
    assert result.status == "finished" and result.final_arguments["summary"] == "fixed"


def test_step_limit_ends_the_agent_and_transcript_is_written(tmp_path):
    with ScriptedModelServer(lambda request: reply(content="thinking...")) as server:
        result = make_loop(server, tmp_path, [finish_tool()], max_steps=3).run("system", "task")
        assert len(server.requests) == 3
    assert result.status == "step_limit" and result.steps == 3
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines][:3] == ["system", "user", "assistant"]
    assert lines[-1]["type"] == "end" and lines[-1]["status"] == "step_limit"
    assert "sk-test-key-000" not in (tmp_path / "t.jsonl").read_text()


def test_tool_output_is_truncated_and_unknown_model_costs_zero(tmp_path):
    big = Tool("big", "a lot of output", params([]), lambda a: "x" * 50_000)

    def policy(request):
        return reply(call("big")) if not observations(request) else reply(call("finish", summary="ok"))

    with ScriptedModelServer(policy) as server:
        result = make_loop(server, tmp_path, [big, finish_tool()], output_limit=1000).run("s", "t")
        [observation] = observations(server.requests[1])
    assert len(observation) < 1100 and "characters cut" in observation
    assert result.cost_usd == 0.0


def test_configured_price_is_used_for_unpriced_models(tmp_path):
    with ScriptedModelServer(lambda r: reply(call("finish", summary="ok"), )) as server:
        result = make_loop(server, tmp_path, [finish_tool()], price=(1_000_000.0, 2_000_000.0)).run("s", "t")
    assert result.cost_usd == pytest.approx(result.prompt_tokens * 1.0 + result.completion_tokens * 2.0)


def test_workspace_tools_refuse_paths_outside_and_edit_exactly_once(tmp_path):
    shell = shell_for(CadreSettings(data_dir=tmp_path / "data"), tmp_path)
    tools = WorkspaceTools(shell, command_timeout=5)
    (tmp_path / "f.txt").write_text("a a b")
    with pytest.raises(Exception, match="outside the workspace"):
        tools.read_file({"path": "../../etc/passwd"})
    with pytest.raises(Exception, match="found 2 times"):
        tools.edit_file({"path": "f.txt", "old": "a", "new": "c"})
    tools.edit_file({"path": "f.txt", "old": "b", "new": "c"})
    assert (tmp_path / "f.txt").read_text() == "a a c"
    assert "[exit code 3]" in tools.bash({"command": "echo hi; exit 3"})
    assert "[killed" in WorkspaceTools(shell, command_timeout=0.5).bash({"command": "sleep 30"})
    assert truncate("abcdef", 100) == "abcdef"


def test_a_reply_served_by_a_fallback_is_priced_as_the_fallback():
    """The primary model (with a configured price) is down; gpt-4o-mini, a fallback litellm has a price for,
    answers: the reply costs what gpt-4o-mini costs, not the primary's configured price."""
    import litellm

    from orchestrator.agent.model_access import LiteLLMModel
    from orchestrator.testing.scripted_model import ScriptedError, ScriptedReply

    def policy(request: dict):
        if request["model"] == "scripted-primary":
            return ScriptedError(status=500, message="primary down")
        return ScriptedReply(content="ok", prompt_tokens=1000, completion_tokens=100)

    with ScriptedModelServer(policy) as server:
        settings = CadreSettings(worker_model="openai/scripted-primary", worker_api_base=server.base_url,
                                 api_key="sk-test-key-000", worker_price_per_mtok=(100.0, 100.0),
                                 worker_fallbacks=["openai/gpt-4o-mini"], model_retries=0)
        reply_ = LiteLLMModel(settings, "worker").complete([{"role": "user", "content": "hi"}], [])
    expected = sum(litellm.cost_per_token(model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=100))
    assert reply_.model == "openai/gpt-4o-mini"
    assert reply_.cost_usd == pytest.approx(expected) and reply_.cost_usd < 0.01  # not 1100 tokens at $100/M


def test_litellms_decoded_claude_tokenizer_is_dropped_and_claude_token_counts_still_work():
    """model_access drops litellm.utils.json_data (the decoded copy nothing reads); a Claude tokenizer is
    still built from the JSON text litellm keeps."""
    import litellm.utils

    import orchestrator.agent.model_access  # noqa: F401

    assert not hasattr(litellm.utils, "json_data")
    assert litellm.token_counter(model="claude-2", messages=[{"role": "user", "content": "hello world"}]) > 0
