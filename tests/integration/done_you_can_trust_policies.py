"""Scripted models for the protected-path, stall and efficiency tests: every reply costs a fixed number of
tokens, so the test can count what each item spent from the requests it saw."""

from __future__ import annotations

import re
import threading

from orchestrator.testing.scripted_model import ScriptedReply, call
from tests.integration.policies import prompt, tool_names, tool_results

TOKENS_PER_REPLY = 110  # 100 prompt + 10 completion tokens, whatever was asked


def fixed(*calls) -> ScriptedReply:
    return ScriptedReply(tool_calls=calls, prompt_tokens=100, completion_tokens=10)


class Counted:
    """Planner: one item per title in round 1 (trying `change_protected` first for `protected:` titles), then
    finish; judge: done. Workers, by title: `write P: C` writes and finishes; `loop` repeats one command;
    `write-then-loop P: C` writes, then repeats one command; a continuation (`continue: ...`) writes
    `continued.txt` and finishes. Each worker request is counted under its item's title."""

    def __init__(self, *titles: str):
        self.titles = titles
        self.calls: dict[str, int] = {}
        self.planner_results: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> ScriptedReply:
        names, text = tool_names(request), prompt(request)
        if "create_task" in names:
            if tool_results(request) or "This is round" in text:
                with self.lock:
                    self.planner_results += tool_results(request)
                return fixed(call("finish", summary="planned"))
            calls = []
            for title in self.titles:
                if title.startswith("protected:"):
                    title = title.removeprefix("protected:")
                    calls.append(call("create_task", title=title, instructions=title, change_protected=True))
                calls.append(call("create_task", title=title, instructions=title))
            return fixed(*calls)
        if "verdict" in names:
            return fixed(call("verdict", done=True, reason="fine"))
        title = re.search(r"Your task: (.*)", text).group(1)
        with self.lock:
            self.calls[title] = self.calls.get(title, 0) + 1
        done = tool_results(request)
        if title.startswith("continue: "):
            return fixed(call("finish", summary="continued")) if done else fixed(
                call("write_file", path="continued.txt", content="continued\n"))
        if title == "loop":
            return fixed(call("bash", command="echo same"))
        if title.startswith("write-then-loop "):
            if done:
                return fixed(call("bash", command="echo same"))
            path, _, content = title.removeprefix("write-then-loop ").partition(": ")
            return fixed(call("write_file", path=path, content=content + "\n"))
        if done:
            return fixed(call("finish", summary="done as asked"))
        path, _, content = title.removeprefix("write ").partition(": ")
        return fixed(call("write_file", path=path, content=content + "\n"))
