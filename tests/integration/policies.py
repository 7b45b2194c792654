"""Scripted model behaviours for the integration tests (stateless: decided from each request alone)."""

from __future__ import annotations

import json
import re

from orchestrator.scripted_model import ScriptedReply, call, reply


def tool_names(request: dict) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools", [])}


def tool_results(request: dict) -> list[str]:
    """The observations the agent has received so far, oldest first."""
    return [m.get("content") or "" for m in request["messages"] if m["role"] == "tool"]


def prompt(request: dict) -> str:
    return "\n".join(m.get("content") or "" for m in request["messages"] if m["role"] in {"system", "user"})


def cycle_of(request: dict) -> int:
    match = re.search(r"cycle (\d+) of", prompt(request))
    return int(match.group(1)) if match else 0


def write_files_worker(request: dict) -> ScriptedReply:
    """A worker whose task title is `write PATH: CONTENT`: writes it, then finishes. `noop` changes nothing."""
    if tool_results(request):
        return reply(call("finish", summary="done as asked"))
    title = re.search(r"Your task: (.*)", prompt(request)).group(1)
    if title.startswith("noop"):
        return reply(call("finish", summary="nothing needed changing"))
    path, _, content = title.removeprefix("write ").partition(": ")
    return reply(call("write_file", path=path, content=content + "\n"))


class TwoCyclePlan:
    """Cycle 1 creates three items (several tool calls in one reply), the judge asks for a second
    cycle, which creates one more item, and the judge then says done."""

    def __call__(self, request: dict) -> ScriptedReply:
        names = tool_names(request)
        if "create_task" in names:
            return self.planner(request)
        if "verdict" in names:
            done = cycle_of(request) >= 2
            return reply(call("verdict", done=done, reason=f"cycle {cycle_of(request)} judged",
                              next_focus="" if done else "add docs/notes.md"))
        return write_files_worker(request)

    def planner(self, request: dict) -> ScriptedReply:
        if tool_results(request):
            return reply(call("finish", summary="planned"))
        if cycle_of(request) == 1:
            return reply(
                call("create_task", title="write a.txt: alpha", instructions="Create a.txt containing alpha."),
                call("create_task", title="write b.txt: beta", instructions="Create b.txt containing beta."),
                call("create_task", title="write c.txt: gamma", instructions="Create c.txt containing gamma."),
            )
        assert "add docs/notes.md" in prompt(request), "the judge's next_focus must reach the next planner"
        return reply(call("create_task", title="write docs/notes.md: notes", instructions="Write the notes."))


def single_item_plan(*titles: str):
    """A policy: the planner creates one item per title, the judge says done at once."""

    def policy(request: dict) -> ScriptedReply:
        names = tool_names(request)
        if "create_task" in names:
            if tool_results(request):
                return reply(call("finish", summary="planned"))
            return reply(*(call("create_task", title=t, instructions=f"Do: {t}") for t in titles))
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="all good"))
        return write_files_worker(request)

    return policy


def arguments_of(request: dict, tool: str) -> list[dict]:
    """Arguments of every call of `tool` the assistant made in the conversation so far."""
    found = []
    for message in request["messages"]:
        for tool_call in message.get("tool_calls") or []:
            if tool_call["function"]["name"] == tool:
                found.append(json.loads(tool_call["function"]["arguments"]))
    return found
