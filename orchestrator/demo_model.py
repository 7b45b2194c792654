"""A deterministic stand-in for an LLM, for trying Cadre without a model or an API key.

Served by `python -m orchestrator.scripted_model --policy orchestrator.demo_model:policy`. It is a
demo, not an agent: it plans two cycles of small file-writing tasks, the workers write exactly the
files they are told to, and the judge accepts the goal in cycle 2. Every answer is decided from
the request alone, so any number of Cadre processes can share one server.
"""

from __future__ import annotations

import re

from orchestrator.scripted_model import ScriptedReply, call, reply

CYCLE_ONE = [
    ("Create GREETING.md", "GREETING.md", "# Hello from Cadre\n\nWritten by a demo worker.\n"),
    ("Create hello.py", "hello.py", 'def hello(name: str) -> str:\n    return f"hello, {name}"\n'),
    ("Create test_hello.py", "test_hello.py",
     "from hello import hello\n\n\ndef test_hello():\n    assert hello('cadre') == 'hello, cadre'\n"),
]
CYCLE_TWO = [("Create CHANGELOG.md", "CHANGELOG.md", "# Changelog\n\n- hello() and its test\n")]
CONTENT_MARKER = "Content of {path}:\n"


def _tools(request: dict) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools", [])}


def _observations(request: dict) -> int:
    return sum(1 for m in request["messages"] if m["role"] == "tool")


def _prompt(request: dict) -> str:
    return "\n".join(m.get("content") or "" for m in request["messages"] if m["role"] in {"system", "user"})


def _cycle(request: dict) -> int:
    match = re.search(r"cycle (\d+) of", _prompt(request))
    return int(match.group(1)) if match else 1


def planner(request: dict) -> ScriptedReply:
    if _observations(request):
        return reply(call("finish", summary="planned the demo's files"))
    tasks = CYCLE_ONE if _cycle(request) == 1 else CYCLE_TWO
    return reply(*(call("create_task", title=title, scope=path,
                        instructions=f"Write the file {path} exactly as given.\n{CONTENT_MARKER.format(path=path)}"
                                     f"{content}")
                   for title, path, content in tasks))


def worker(request: dict) -> ScriptedReply:
    if _observations(request):
        return reply(call("finish", summary="wrote the file as instructed"))
    match = re.search(r"Content of (\S+):\n(.*?)(?:\n\nScope:|\Z)", _prompt(request), re.S)
    if match is None:
        return reply(call("finish", summary="nothing to write"))
    return reply(call("write_file", path=match.group(1), content=match.group(2).rstrip("\n") + "\n"))


def judge(request: dict) -> ScriptedReply:
    if _cycle(request) < 2:
        return reply(call("verdict", done=False, reason="the code is there but the change log is missing",
                          next_focus="add a CHANGELOG.md"))
    return reply(call("verdict", done=True, reason="all demo files are present"))


def policy(request: dict) -> ScriptedReply:
    """Route a request to the planner, judge or worker behaviour by the tools it offers."""
    tools = _tools(request)
    if "create_task" in tools:
        return planner(request)
    if "verdict" in tools:
        return judge(request)
    return worker(request)
