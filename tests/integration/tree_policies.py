"""Scripted planners that build planning trees, for the planning-tree tests."""

from __future__ import annotations

import re
import threading

from orchestrator.testing.scripted_model import ScriptedReply, call, reply
from tests.integration.policies import prompt, tool_names, tool_results, write_files_worker


def planner_round(request: dict) -> int:
    match = re.search(r"This is round (\d+)", prompt(request))
    return int(match.group(1)) if match else 1


def area_of(request: dict) -> str:
    match = re.search(r"^Your area: (.*)$", prompt(request), re.M)
    return match.group(1) if match else ""


def is_root(request: dict) -> bool:
    return "You are the root planner" in request["messages"][0]["content"]


class TreePlan:
    """Root → sub-planners `areas`; each sub-planner creates two items in its area, and the
    sub-planner for `deeper` also spawns a sub-sub-planner. Every node finishes on its wake-up.
    The first two workers wait for each other, so items provably land in parallel."""

    def __init__(self, areas=("frontend", "backend"), deeper: str | None = "backend", extra_calls=()):
        self.areas = areas
        self.deeper = deeper
        self.extra_calls = extra_calls
        self.barrier = threading.Barrier(2, timeout=60)
        self.lock = threading.Lock()
        self.waited: set[str] = set()

    def __call__(self, request: dict) -> ScriptedReply:
        names = tool_names(request)
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="tree done"))
        if "create_task" in names:
            if tool_results(request) or planner_round(request) > 1:
                return reply(call("finish", summary=f"{area_of(request) or 'root'} round {planner_round(request)}"))
            return self.first_round(request)
        return self.worker(request)

    def first_round(self, request: dict) -> ScriptedReply:
        if is_root(request):
            return reply(*(call("spawn_subplanner", area=a, brief=f"build {a}") for a in self.areas),
                         *self.extra_calls)
        area = area_of(request)
        calls = [call("create_task", title=f"write {area}/{name}.txt: {name} of {area}", scope=area,
                      instructions=f"Create {area}/{name}.txt") for name in ("one", "two")]
        if area == self.deeper:
            calls.append(call("spawn_subplanner", area=f"{area}/db", brief="the database layer"))
        return reply(*calls)

    def worker(self, request: dict) -> ScriptedReply:
        if tool_results(request):
            return reply(call("finish", summary="wrote it", concerns="none really", findings="the tree works"))
        title = request["messages"][1]["content"]
        with self.lock:
            first = len(self.waited) < 2 and title not in self.waited
            self.waited.add(title)
        if first:
            self.barrier.wait()
        return write_files_worker(request)


class CheckDrivenPlan:
    """The root creates one item; on wake-up it fixes what the failing check reports, then finishes."""

    def __call__(self, request: dict) -> ScriptedReply:
        names = tool_names(request)
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="check passes"))
        if "create_task" in names:
            if tool_results(request):
                return reply(call("finish", summary="planned"))
            if planner_round(request) == 1:
                return reply(call("create_task", title="write other.txt: unrelated", instructions="x"))
            if "FAILS on the branch head" in prompt(request):
                return reply(call("create_task", title="write fixed.txt: fixed", instructions="fix the check"))
            return reply(call("finish", summary="the branch is green"))
        return write_files_worker(request)
