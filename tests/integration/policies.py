"""Scripted model behaviours for the integration tests (stateless: decided from each request alone)."""

from __future__ import annotations

import json
import re
import threading
import time

from orchestrator.testing.scripted_model import ScriptedReply, call, reply


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
    """A worker whose task title is `write PATH: CONTENT` (or `append PATH: LINE`) does it, then finishes.

    A title starting with `noop` changes nothing."""
    if tool_results(request):
        return reply(call("finish", summary="done as asked"))
    title = re.search(r"Your task: (.*)", prompt(request)).group(1)
    if title.startswith("noop"):
        return reply(call("finish", summary="nothing needed changing"))
    if title.startswith("append "):
        path, _, line = title.removeprefix("append ").partition(": ")
        return reply(call("bash", command=f"echo '{line}' >> {path}"))
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
            if tool_results(request) or "This is round" in prompt(request):
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


def keep_both_sides_on_conflict(base):
    """Wrap a policy: in a conflict-resolution turn, delete the conflict markers (keeping both sides)."""

    def policy(request: dict) -> ScriptedReply:
        if "Files in conflict" in prompt(request):
            if tool_results(request):
                return reply(call("finish", summary="kept both sides"))
            paths = re.findall(r"^- (\S+)$", prompt(request), re.M)
            return reply(*(call("bash", command=f"sed -i '/^[<=>|]\\{{7\\}}/d' {path}") for path in paths))
        return base(request)

    return policy


class Gate:
    """Wrap a policy: every worker's first model request waits until `open()`, or until `release_one()`
    lets that one request through (or 120 s)."""

    def __init__(self, base):
        self.base = base
        self.opened = threading.Event()
        self.passes = threading.Semaphore(0)
        self.waiting = 0
        self.lock = threading.Lock()

    def open(self) -> None:
        self.opened.set()

    def release_one(self) -> None:
        self.passes.release()

    def __call__(self, request: dict) -> ScriptedReply:
        first_request = not tool_results(request) and "Files in conflict" not in prompt(request)
        if "write_file" in tool_names(request) and first_request:
            with self.lock:
                self.waiting += 1
            deadline = time.monotonic() + 120
            while not self.opened.is_set() and time.monotonic() < deadline:
                if self.passes.acquire(timeout=0.1):
                    break
        return self.base(request)
