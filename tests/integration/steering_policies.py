"""Scripted model behaviours for the steering tests: a recorder of who asked what and when, and policies whose
agents wait where the test steers them."""

from __future__ import annotations

import re
import threading
import time

from orchestrator.testing.scripted_model import ScriptedReply, call, reply
from tests.integration.policies import prompt, tool_names, tool_results, write_files_worker


def kind_of(request: dict) -> str:
    names = tool_names(request)
    return "planner" if "create_task" in names else "judge" if "verdict" in names else "worker"


class Recorder:
    """Wrap a policy: remember each request's arrival (monotonic time), its role and its prompt text."""

    def __init__(self, base):
        self.base = base
        self.seen: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> ScriptedReply:
        with self.lock:
            self.seen.append((time.monotonic(), kind_of(request), prompt(request)))
        return self.base(request)

    def prompts(self, kind: str, since: float = 0.0) -> list[str]:
        with self.lock:
            return [text for at, who, text in self.seen if who == kind and at >= since]

    def count(self, kind: str, since: float = 0.0) -> int:
        return len(self.prompts(kind, since))


class LoopingWorker:
    """A worker that writes its file, then keeps running `sleep 1` (it never finishes) until `finish_next` is
    set; later attempts write and finish. The planner creates one item per title; its follow-up round waits
    for `release_planner`; the judge says done."""

    def __init__(self, *titles: str):
        self.titles = titles
        self.finish_next = threading.Event()
        self.release_planner = threading.Event()

    def __call__(self, request: dict) -> ScriptedReply:
        names, text = tool_names(request), prompt(request)
        if "create_task" in names:
            if "This is round" in text:
                self.release_planner.wait(120)
                return reply(call("finish", summary="followed up"))
            if tool_results(request):
                return reply(call("finish", summary="planned"))
            return reply(*(call("create_task", title=t, instructions=f"Do: {t}") for t in self.titles))
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="all good"))
        if self.finish_next.is_set():
            return write_files_worker(request)
        if not tool_results(request):
            path, _, content = re.search(r"Your task: write (.*)", text).group(1).partition(": ")
            return reply(call("write_file", path=path, content=content + "\n"))
        return reply(call("bash", command="sleep 1"))
