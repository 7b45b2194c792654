"""Catching a stalled agent before it burns its whole step budget: the same tool call over and over, or
step after step with nothing changed in its worktree.

`StallWatch` is fed each model reply and asked, before every next model call, whether the agent has stalled;
a stall costs at most `repeats` identical calls or `idle_steps` steps without a change.
"""

from __future__ import annotations

import json
from collections.abc import Callable


class StallWatch:
    """Counts identical consecutive tool calls and consecutive steps that left the worktree unchanged."""

    def __init__(self, fingerprint: Callable[[], str], repeats: int, idle_steps: int):
        self.fingerprint, self.repeats, self.idle_steps = fingerprint, repeats, idle_steps
        self.last_call: str | None = None
        self.same_calls = 0
        self.idle = 0
        self.last_print = fingerprint()

    def saw_reply(self, reply) -> None:
        """Note the reply's tool calls, in order (a call identical to the one before extends the run)."""
        for tool_call in reply.tool_calls:
            signature = f"{tool_call.name}\0{_canonical(tool_call.arguments)}"
            self.same_calls = self.same_calls + 1 if signature == self.last_call else 1
            self.last_call = signature

    def stalled(self) -> str | None:
        """Why the agent counts as stalled now (after its last step's tools ran), or None."""
        now = self.fingerprint()
        self.idle = self.idle + 1 if now == self.last_print else 0
        self.last_print = now
        if self.same_calls >= self.repeats:
            return f"it made the same tool call {self.same_calls} times in a row"
        if self.idle >= self.idle_steps:
            return f"it changed nothing in its worktree for {self.idle} steps"
        return None


def _canonical(arguments: str) -> str:
    """Raw JSON arguments with key order and spacing made irrelevant (as given, if they are not JSON)."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except (ValueError, TypeError):
        return str(arguments)
