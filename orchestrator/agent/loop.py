"""The builtin agent: a tool-calling loop over any model, with one tool set per role.

Errors the model caused (bad JSON arguments, an unknown tool, a failing command) go back to it as
observations; system errors (broker, auth, network) propagate to the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.config.secrets import scrub
from orchestrator.agent.stall import StallWatch

log = logging.getLogger(__name__)


class ToolError(Exception):
    """The model used a tool wrongly; the message goes back to it as the observation."""


class StopAgent(Exception):
    """Raised by `should_stop` checks: the run was stopped or its budget spent."""


@dataclass(frozen=True)
class Tool:
    """A tool the model may call. `handler` gets the parsed arguments and returns the observation."""

    name: str
    description: str
    parameters: dict
    handler: Callable[[dict], str]
    terminal: bool = False

    def schema(self) -> dict:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


def params(required: list[str], **properties: str) -> dict:
    """A JSON schema for string arguments: `params(["path"], path="file to read")`."""
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in properties.items()},
        "required": required,
    }


class ChatModel(Protocol):
    def complete(self, messages: list[dict], tools: list[dict]): ...


@dataclass
class AgentResult:
    """How an agent run ended: `finished` (a terminal tool was called), at a limit (`step_limit`,
    `cost_limit`, or `limit` for an external agent's own, with `detail`), `stopped` or `failed`."""

    status: str
    final_tool: str | None = None
    final_arguments: dict = field(default_factory=dict)
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    transcript: Path | None = None
    detail: str = ""
    usage_reported: bool = True

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Transcript:
    """A JSONL record of one agent run, secrets masked, appended as it happens: to a file of this host,
    and to `stream` (a shared store every machine can read) when one is given."""

    def __init__(self, path: Path, stream: Callable[[str], object] | None = None):
        self.path = path
        self.stream = stream
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, kind: str, **data) -> None:
        line = scrub(json.dumps({"type": kind, **data}, default=str, ensure_ascii=False))
        self._file.write(line + "\n")
        self._file.flush()
        if self.stream is not None:
            self.stream(line)

    def close(self) -> None:
        self._file.close()


def truncate(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    half = limit // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n[... {dropped} characters cut ...]\n{text[-half:]}"


def _parse_arguments(raw: str) -> dict:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolError(f"arguments are not valid JSON ({exc.msg} at position {exc.pos}); send a JSON object")
    if not isinstance(value, dict):
        raise ToolError("arguments must be a JSON object")
    return value


def _call_tool(tool: Tool | None, name: str, arguments: dict) -> str:
    if tool is None:
        raise ToolError(f"unknown tool {name!r}")
    missing = [p for p in tool.parameters.get("required", []) if p not in arguments]
    if missing:
        raise ToolError(f"{name} is missing required argument(s): {', '.join(missing)}")
    return tool.handler(arguments)


@dataclass
class AgentLoop:
    """Runs one agent to a terminal tool call, its step limit, or a stop request."""

    model: ChatModel
    tools: list[Tool]
    max_steps: int
    output_limit: int
    transcript: Transcript
    on_reply: Callable[[object], None] | None = None
    should_stop: Callable[[], bool] | None = None
    stall_watch: StallWatch | None = None  # ends the run `stalled` when the agent repeats itself or idles

    def run(self, system: str, user: str) -> AgentResult:
        """Talk with the model until it calls a terminal tool; every reply's tool calls run in order.

        Everything sent to the model (prompts and tool output) has secret values masked first.
        """
        system, user = scrub(system), scrub(user)
        by_name = {t.name: t for t in self.tools}
        schemas = [t.schema() for t in self.tools]
        messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        self.transcript.write("system", content=system)
        self.transcript.write("user", content=user)
        result = AgentResult(status="step_limit", transcript=self.transcript.path)
        try:
            while result.steps < self.max_steps:
                if self.should_stop is not None and self.should_stop():
                    result.status = "stopped"
                    break
                if self.stall_watch is not None and result.steps and (why := self.stall_watch.stalled()):
                    result.status, result.detail = "stalled", why
                    break
                reply = self.model.complete(messages, schemas)
                if self.stall_watch is not None:
                    self.stall_watch.saw_reply(reply)
                result.steps += 1
                result.prompt_tokens += reply.prompt_tokens
                result.completion_tokens += reply.completion_tokens
                result.cost_usd += reply.cost_usd
                if self.on_reply is not None:
                    self.on_reply(reply)
                messages.append(reply.as_message())
                self.transcript.write("assistant", step=result.steps, content=reply.content,
                                      tool_calls=[c.__dict__ for c in reply.tool_calls],
                                      tokens=reply.tokens, cost_usd=reply.cost_usd, model=getattr(reply, "model", ""))
                if not reply.tool_calls:
                    nudge = "Reply with tool calls only. Call a tool to act, or the finishing tool when done."
                    messages.append({"role": "user", "content": nudge})
                    self.transcript.write("user", content=nudge)
                    continue
                for call in reply.tool_calls:
                    observation, finished = self._execute(by_name, call, result)
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
                    self.transcript.write("tool", name=call.name, call_id=call.id, output=observation)
                    if finished and result.final_tool is None:
                        result.final_tool = call.name
                        result.final_arguments = _parse_arguments(call.arguments)
                if result.final_tool is not None:
                    result.status = "finished"
                    break
        finally:
            self.transcript.write("end", status=result.status, steps=result.steps, tokens=result.tokens,
                                  cost_usd=result.cost_usd, final_tool=result.final_tool)
            self.transcript.close()
        return result

    def _execute(self, by_name: dict[str, Tool], call, result: AgentResult) -> tuple[str, bool]:
        """Run one tool call; returns the (truncated) observation and whether it was a terminal call."""
        if result.final_tool is not None:
            return "ignored: the agent has already finished", False
        tool = by_name.get(call.name)
        try:
            arguments = _parse_arguments(call.arguments)
            output = _call_tool(tool, call.name, arguments)
        except ToolError as exc:
            return scrub(f"error: {exc}"), False
        return truncate(scrub(output), self.output_limit), bool(tool and tool.terminal)
