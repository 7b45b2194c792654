"""The scripted model server, exercised through real litellm calls over HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Must be set before litellm is imported, or importing it tries to fetch the cost map from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402

from orchestrator.testing.scripted_model import (  # noqa: E402
    ScriptedError,
    ScriptedModelServer,
    ScriptedReply,
    ToolCall,
    call,
    reply,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Please edit the repo."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Write a file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
                "required": ["path", "text"],
            },
        },
    }
]


class Script:
    """A policy that hands out queued outcomes in order (a callable outcome is called with the request)."""

    def __init__(self) -> None:
        self.queue: list = []

    def __call__(self, request: dict) -> ScriptedReply | ScriptedError:
        outcome = self.queue.pop(0)
        return outcome(request) if callable(outcome) else outcome


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(script) as srv:
        yield srv


def complete(server: ScriptedModelServer, **kwargs):
    kwargs.setdefault("messages", MESSAGES)
    return litellm.completion(
        model="openai/scripted-test",
        api_base=server.base_url,
        api_key="sk-test",
        num_retries=0,
        max_retries=0,  # the OpenAI client otherwise retries 429/5xx itself
        **kwargs,
    )


def test_two_tool_calls_in_order_with_usage(server: ScriptedModelServer, script: Script) -> None:
    script.queue.append(
        ScriptedReply(
            content="Doing two things.",
            tool_calls=(call("write_file", path="a.txt", text="hi"), call("run", cmd=["ls", "-l"])),
            prompt_tokens=123,
            completion_tokens=45,
        )
    )
    resp = complete(server, tools=TOOLS)

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Doing two things."
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["write_file", "run"]
    assert json.loads(calls[0].function.arguments) == {"path": "a.txt", "text": "hi"}
    assert json.loads(calls[1].function.arguments) == {"cmd": ["ls", "-l"]}
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)
    assert calls[0].id != calls[1].id
    assert resp.model == "scripted-test"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (123, 45, 168)

    # litellm 1.110: completion_cost() on an unmapped model raises (ModelNotMappedError here,
    # after printing a "Provider List" banner); it does not return 0. Nothing below depends on it.


def test_plain_text_reply_and_default_token_estimates(server: ScriptedModelServer, script: Script) -> None:
    script.queue.append(reply(content="All done."))
    resp = complete(server)

    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == "All done."
    assert not choice.message.tool_calls
    assert resp.usage.prompt_tokens == max(1, len(json.dumps(MESSAGES)) // 4)
    assert resp.usage.completion_tokens >= 1
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_malformed_string_arguments_arrive_verbatim(server: ScriptedModelServer, script: Script) -> None:
    broken = '{"path": "a.txt", "text": '
    script.queue.append(reply(ToolCall("write_file", broken)))
    resp = complete(server, tools=TOOLS)

    (tc,) = resp.choices[0].message.tool_calls
    assert tc.function.name == "write_file"
    assert tc.function.arguments == broken


def test_scripted_errors_map_to_litellm_exceptions(server: ScriptedModelServer, script: Script) -> None:
    script.queue.append(ScriptedError(429, "slow down", type="rate_limit_error", code="rate_limit_exceeded"))
    with pytest.raises(litellm.RateLimitError, match="slow down"):
        complete(server)

    script.queue.append(ScriptedError(401, "bad key", type="authentication_error"))
    with pytest.raises(litellm.AuthenticationError, match="bad key"):
        complete(server)

    assert len(server.requests) == 2  # no retries happened


def test_requests_are_recorded_with_tools(server: ScriptedModelServer, script: Script) -> None:
    def inspect(request: dict) -> ScriptedReply:
        request["messages"].clear()  # a policy mutating its argument must not alter the record
        return reply(content="ok")

    script.queue += [inspect, reply(content="again")]
    complete(server, tools=TOOLS)
    complete(server, messages=[{"role": "user", "content": "second"}])

    first, second = server.requests
    assert first["model"] == "scripted-test"
    assert first["messages"] == MESSAGES
    assert first["tools"] == TOOLS
    assert second["messages"] == [{"role": "user", "content": "second"}]
    assert "tools" not in second

    server.requests.clear()  # a copy: the server's record is unaffected
    assert len(server.requests) == 2


def test_policy_exception_is_a_500_and_server_survives(server: ScriptedModelServer, script: Script) -> None:
    def explode(request: dict) -> ScriptedReply:
        raise RuntimeError("policy blew up")

    script.queue += [explode, reply(content="still alive")]
    with pytest.raises(litellm.InternalServerError, match="RuntimeError: policy blew up"):
        complete(server)
    assert complete(server).choices[0].message.content == "still alive"


def test_streaming_through_litellm(server: ScriptedModelServer, script: Script) -> None:
    script.queue += [
        ScriptedReply(content="streamed text", prompt_tokens=11, completion_tokens=7),
        reply(call("write_file", path="b.txt", text="x")),
    ]
    chunks = list(complete(server, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed text"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert (usage[-1].prompt_tokens, usage[-1].completion_tokens) == (11, 7)
    assert server.requests[0]["stream"] is True

    chunks = list(complete(server, stream=True, tools=TOOLS))
    built = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    (tc,) = built.choices[0].message.tool_calls
    assert tc.function.name == "write_file"
    assert json.loads(tc.function.arguments) == {"path": "b.txt", "text": "x"}
    assert built.choices[0].finish_reason == "tool_calls"


def test_models_endpoint_and_unknown_route(server: ScriptedModelServer) -> None:
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as resp:
        assert json.load(resp)["object"] == "list"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.base_url}/nope", timeout=5)
    assert info.value.code == 404
    assert "error" in json.load(info.value)


def test_module_entry_point_serves_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "my_policy.py").write_text(
        textwrap.dedent(
            """
            from orchestrator.testing.scripted_model import reply

            def answer(request):
                return reply(content="from the CLI")
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.testing.scripted_model", "--policy", "my_policy:answer"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
        request = urllib.request.Request(
            f"{base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.load(resp)["choices"][0]["message"]["content"] == "from the CLI"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
