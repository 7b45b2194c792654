"""A deterministic stand-in for an LLM, for trying Cadre without a model or an API key.

Served by `python -m orchestrator.testing.scripted_model --policy orchestrator.local.demo_model:policy` (and by
`cadre demo`). It is a demo, not an agent: it knows the sample project of
`orchestrator.local.sample_project`, plans one work item per broken module, its workers write the fixed
files, and its judge says done when the check command passed. Every answer is decided from the
request alone, so any number of Cadre processes can share one server.
"""

from __future__ import annotations

import re

from orchestrator.local.sample_project import FIXES
from orchestrator.testing.scripted_model import ScriptedReply, call, reply

CONTENT_MARKER = "Content of {path}:\n"


def _tools(request: dict) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools", [])}


def _observations(request: dict) -> int:
    return sum(1 for m in request["messages"] if m["role"] == "tool")


def _prompt(request: dict) -> str:
    return "\n".join(m.get("content") or "" for m in request["messages"] if m["role"] in {"system", "user"})


def planner(request: dict) -> ScriptedReply:
    if _observations(request) or "This is round" in _prompt(request):
        return reply(call("finish", summary="one work item per broken module"))
    return reply(*(call("create_task", title=f"Fix {path}", scope=path,
                        instructions=f"Make the tests of {path} pass.\n{CONTENT_MARKER.format(path=path)}{content}")
                   for path, content in FIXES.items()))


def worker(request: dict) -> ScriptedReply:
    if _observations(request):
        return reply(call("finish", summary="wrote the fix", findings="the tests cover this module"))
    match = re.search(r"Content of (\S+):\n(.*?)(?:\n\nScope:|\Z)", _prompt(request), re.S)
    if match is None:
        return reply(call("finish", summary="nothing to write"))
    return reply(call("write_file", path=match.group(1), content=match.group(2).rstrip("\n") + "\n"))


def judge(request: dict) -> ScriptedReply:
    text = _prompt(request)
    if "passed. Its output" in text or "No check command" in text:
        return reply(call("verdict", done=True, reason="the test suite passes"))
    return reply(call("verdict", done=False, reason="the test suite still fails",
                      next_focus="fix the failing tests"))


def policy(request: dict) -> ScriptedReply:
    """Route a request to the planner, judge or worker behaviour by the tools it offers."""
    tools = _tools(request)
    if "create_task" in tools:
        return planner(request)
    if "verdict" in tools:
        return judge(request)
    return worker(request)
