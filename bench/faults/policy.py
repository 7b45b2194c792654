"""The scripted model's answers: a planner that creates `items` files, workers that write them, a judge.

The server runs in the benchmark's own process, so the policy also tells the benchmark which tasks the
planner was told to create (the planned items, counted from the model's side, not from Cadre's records)
and when a judge request came in (to kill the judge while it waits for its answer).
"""

from __future__ import annotations

import random
import threading
import time

from orchestrator.testing.scripted_model import ScriptedReply, call, reply


class Policy:
    """Planner: `items` tasks in round 1, nothing in follow-up rounds; worker: think `think` seconds, write its
    file, finish; judge: wait `judge_delay` seconds, then "done"."""

    def __init__(self, items: int, think: tuple[float, float] = (0.5, 2.5), judge_delay: float = 0.0):
        self.items, self.think, self.judge_delay = items, think, judge_delay
        self._lock = threading.Lock()
        self._judge_requests: list[tuple[str, float]] = []
        self._planned: dict[str, set[str]] = {}

    def planned(self, tag: str) -> set[str]:
        """The titles of the tasks the planner of the run with goal `tag` was told to create."""
        with self._lock:
            return set(self._planned.get(tag, ()))

    def judge_request_at(self, tag: str) -> float | None:
        """When the first judge request of the run with goal `tag` arrived (None: not yet)."""
        with self._lock:
            return next((at for t, at in self._judge_requests if t == tag), None)

    def __call__(self, request: dict) -> ScriptedReply:
        tools = {t["function"]["name"] for t in request.get("tools", [])}
        answered = any(m["role"] == "tool" for m in request["messages"])
        text = "\n".join(m.get("content") or "" for m in request["messages"] if m["role"] == "user")
        tag = text.split("Goal:\n", 1)[1].split("\n", 1)[0] if "Goal:\n" in text else ""
        if "create_task" in tools:
            if answered or "This is round" in text:
                return reply(call("finish", summary="planned"))
            titles = [f"write {tag}-{k}.txt" for k in range(self.items)]
            with self._lock:
                self._planned.setdefault(tag, set()).update(titles)
            return reply(*(call("create_task", title=title, instructions=f"file {k}")
                           for k, title in enumerate(titles)))
        if "verdict" in tools:
            with self._lock:
                self._judge_requests.append((tag, time.time()))
            time.sleep(self.judge_delay)
            return reply(call("verdict", done=True, reason="files written"))
        if answered:
            return reply(call("finish", summary="written"))
        time.sleep(random.uniform(*self.think))
        path = text.split("Your task: write ", 1)[1].split("\n", 1)[0]
        return reply(call("write_file", path=path, content="x\n"))
