"""Each external agent's own report, as the programs print or write it (formats recorded from real runs of
claude-code 2.1, codex-cli 0.171, aider 0.86.2 and mini-swe-agent 2.4.6)."""

from __future__ import annotations

import json

from orchestrator.agent.reports import plain_text, read_report

CLAUDE_OK = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "result": "Created hello.txt.",
             "total_cost_usd": 0.0075, "usage": {"input_tokens": 2000, "cache_creation_input_tokens": 10,
                                                 "cache_read_input_tokens": 5, "output_tokens": 100}}


def test_claude_code_result_object(tmp_path):
    ok = read_report("claude-json", 0, json.dumps(CLAUDE_OK), tmp_path)
    assert (ok.outcome, ok.summary, ok.prompt_tokens, ok.completion_tokens, ok.cost_usd, ok.reported) == \
        ("finished", "Created hello.txt.", 2015, 100, 0.0075, True)
    limit = CLAUDE_OK | {"subtype": "error_max_turns", "is_error": True, "result": None,
                         "errors": ["Reached maximum number of turns (2)"]}
    assert read_report("claude-json", 1, json.dumps(limit), tmp_path).outcome == "limit"
    down = CLAUDE_OK | {"is_error": True, "result": "API Error: Unable to connect to API (ConnectionRefused)"}
    failed = read_report("claude-json", 1, json.dumps(down), tmp_path)
    assert failed.outcome == "failed" and "Unable to connect" in failed.detail
    assert read_report("claude-json", 1, "not json at all", tmp_path).outcome == "failed"


def test_codex_json_events(tmp_path):
    events = [{"type": "thread.started", "thread_id": "t"}, {"type": "turn.started"},
              {"type": "item.completed", "item": {"id": "i1", "type": "command_execution", "command": "x",
                                                  "aggregated_output": "", "exit_code": 0, "status": "completed"}},
              {"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "Created hello.txt."}},
              {"type": "turn.completed", "usage": {"input_tokens": 2000, "cached_input_tokens": 400,
                                                   "output_tokens": 100, "reasoning_output_tokens": 0}}]
    ok = read_report("codex-jsonl", 0, "\n".join(map(json.dumps, events)), tmp_path)
    assert (ok.outcome, ok.summary, ok.prompt_tokens, ok.completion_tokens, ok.cost_usd) == \
        ("finished", "Created hello.txt.", 2000, 100, None)
    failed = [*events[:2], {"type": "turn.failed", "error": {"message": "stream disconnected before completion"}}]
    report = read_report("codex-jsonl", 1, "\n".join(map(json.dumps, failed)), tmp_path)
    assert report.outcome == "failed" and "stream disconnected" in report.detail


def test_aider_token_lines(tmp_path):
    output = ("Aider v0.86.2\nModel: openai/scripted with whole edit format\n"
              "Tokens: 2.5k sent, 120 received. Cost: $0.01 message, $0.01 session.\nhello.py\n"
              "Applied edit to hello.py\nTokens: 900 sent, 1.2k cache hit, 40 received. Cost: $0.00014 message,"
              " $0.02 session.\nApplied edit to hello.py\n")
    report = read_report("aider-lines", 0, output, tmp_path)
    assert (report.outcome, report.prompt_tokens, report.completion_tokens, report.cost_usd) == \
        ("finished", 2500 + 900 + 1200, 160, 0.02)
    assert report.summary == "aider edited hello.py"
    no_price = read_report("aider-lines", 0, "Tokens: 100 sent, 20 received.\n", tmp_path)
    assert no_price.cost_usd is None and no_price.reported
    down = read_report("aider-lines", 0, "litellm.InternalServerError: Connection refused\n", tmp_path)
    assert down.outcome == "failed" and not down.reported, "aider exits 0 when its model is down"


def test_mini_swe_agent_trajectory(tmp_path):
    def trajectory(status: str, cost: float) -> None:
        usage = {"prompt_tokens": 1000, "completion_tokens": 50}
        (tmp_path / "trajectory.json").write_text(json.dumps({
            "info": {"exit_status": status, "submission": "my summary\n",
                     "model_stats": {"instance_cost": cost, "api_calls": 2}},
            "messages": [{"role": "system"}, {"role": "user"},
                         {"role": "assistant", "extra": {"response": {"usage": usage}}},
                         {"role": "tool"}, {"role": "assistant", "extra": {"response": {"usage": usage}}}]}))

    trajectory("Submitted", 0.0)
    done = read_report("mini-trajectory", 0, "", tmp_path)
    assert (done.outcome, done.summary, done.prompt_tokens, done.completion_tokens, done.cost_usd) == \
        ("finished", "my summary", 2000, 100, None)
    trajectory("LimitsExceeded", 0.25)
    limit = read_report("mini-trajectory", 0, "", tmp_path)
    assert limit.outcome == "limit" and limit.cost_usd == 0.25, "mini exits 0 at its own limit"
    trajectory("RepeatedFormatError", 0.0)
    assert read_report("mini-trajectory", 0, "", tmp_path).outcome == "failed"


def test_terminal_escapes_are_removed():
    assert plain_text("\x1b[1;32mgreen\x1b[0m done\rprogress 50%\rprogress 100%\nnext") == \
        "green doneprogress 50%progress 100%\nnext"
