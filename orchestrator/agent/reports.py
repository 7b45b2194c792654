"""Reading what an external agent says about its own run: how it ended, its last words, its usage.

Each program reports in its own way: Claude Code prints one JSON result object, Codex prints JSON
events (one per line), aider prints a `Tokens: … Cost: …` line per model call, mini-swe-agent writes a
trajectory file. A program that reports nothing is judged by its exit code and counted unreported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.untrusted.files import read_file

ANSI_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r(?!\n)")
AIDER_USAGE = re.compile(r"^Tokens: ([\d.]+k?) sent(?:, ([\d.]+k?) cache write)?(?:, ([\d.]+k?) cache hit)?, "
                         r"([\d.]+k?) received\.(?:\s+Cost: \$([\d.]+) message, \$([\d.]+) session\.)?", re.M)
MAX_REPORT_BYTES = 64_000_000
CLAUDE_LIMITS = {"error_max_turns": "its turn limit", "error_max_budget_usd": "its cost budget"}
MINI_LIMITS = {"LimitsExceeded": "its step or cost limit", "TimeExceeded": "its time limit"}


@dataclass(frozen=True)
class AgentReport:
    """How an agent ended (`finished`, `limit` or `failed`, with `detail`), its last words, and its usage.

    `cost_usd` is None when the agent reported tokens but no cost (Cadre prices them); `reported` is
    False when it reported no usage at all.
    """

    outcome: str
    summary: str = ""
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    reported: bool = False


def plain_text(output: str) -> str:
    """`output` with terminal escapes (colours, cursor moves, lone carriage returns) removed."""
    return ANSI_ESCAPES.sub("", output)


def _json_lines(output: str) -> list[dict]:
    found = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                found.append(value)
    return found


def _by_exit_code(code: int | None) -> AgentReport:
    return AgentReport("finished" if code == 0 else "failed", detail="" if code == 0 else f"exit code {code}")


def claude_report(code: int | None, output: str, _io_dir: Path) -> AgentReport:
    """Claude Code's `--output-format json` result object."""
    result = next((d for d in reversed(_json_lines(output)) if d.get("type") == "result"), None)
    if result is None:
        return _by_exit_code(code)
    usage = result.get("usage") or {}
    prompt = sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens",
                                                  "cache_read_input_tokens"))
    subtype = str(result.get("subtype") or "")
    if subtype in CLAUDE_LIMITS:
        outcome, detail = "limit", CLAUDE_LIMITS[subtype]
    elif result.get("is_error") or subtype != "success":
        outcome, detail = "failed", "; ".join(map(str, result.get("errors") or [])) or str(result.get("result") or subtype)
    else:
        outcome, detail = "finished", ""
    return AgentReport(outcome, str(result.get("result") or ""), detail, prompt, int(usage.get("output_tokens") or 0),
                       float(result.get("total_cost_usd") or 0.0), reported=True)


def codex_report(code: int | None, output: str, _io_dir: Path) -> AgentReport:
    """Codex's `exec --json` events: usage per `turn.completed`, its last `agent_message`, `turn.failed`."""
    events = _json_lines(output)
    turns = [e.get("usage") or {} for e in events if e.get("type") == "turn.completed"]
    messages = [e["item"].get("text", "") for e in events
                if e.get("type") == "item.completed" and (e.get("item") or {}).get("type") == "agent_message"]
    failed = [e for e in events if e.get("type") == "turn.failed"]
    if not turns and not failed:
        return _by_exit_code(code)
    detail = str((failed[-1].get("error") or {}).get("message", "turn failed")) if failed else ""
    return AgentReport("failed" if failed or code != 0 else "finished", messages[-1] if messages else "", detail,
                       sum(int(t.get("input_tokens") or 0) for t in turns),
                       sum(int(t.get("output_tokens") or 0) for t in turns), None, reported=bool(turns))


def _aider_count(text: str | None) -> int:
    if not text:
        return 0
    return round(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))


def aider_report(code: int | None, output: str, _io_dir: Path) -> AgentReport:
    """aider's `Tokens: N sent, M received. Cost: $x message, $y session.` lines (counts above 1,000 are
    rounded by aider itself), and its `Applied edit to PATH` lines."""
    text = plain_text(output)
    calls = list(AIDER_USAGE.finditer(text))
    edited = re.findall(r"^Applied edit to (.+)$", text, re.M)
    summary = f"aider edited {', '.join(dict.fromkeys(edited))}" if edited else "aider made no edit"
    if not calls:
        error = next((ln for ln in text.splitlines() if "error" in ln.lower()), "aider reported no model call")
        return AgentReport("failed", summary, error if code == 0 else f"exit code {code}: {error}")
    sessions = [c.group(6) for c in calls if c.group(6)]
    return AgentReport("finished" if code == 0 else "failed", summary, "" if code == 0 else f"exit code {code}",
                       sum(_aider_count(c.group(1)) + _aider_count(c.group(2)) + _aider_count(c.group(3)) for c in calls),
                       sum(_aider_count(c.group(4)) for c in calls),
                       float(sessions[-1]) if sessions else None, reported=True)


def mini_report(code: int | None, _output: str, io_dir: Path) -> AgentReport:
    """mini-swe-agent's trajectory: `info.exit_status`, `info.submission`, `info.model_stats`, and the usage
    of each model response (mini keeps no token total)."""
    try:  # the agent's own file, in a folder it may write: read through the one door for hostile input
        trajectory = json.loads(read_file(io_dir / "trajectory.json", MAX_REPORT_BYTES))
    except (OSError, ValueError):
        return _by_exit_code(code)
    if not isinstance(trajectory, dict):
        return _by_exit_code(code)
    info = trajectory.get("info") or {}
    usages = [(((m.get("extra") or {}).get("response") or {}).get("usage") or {})
              for m in trajectory.get("messages", []) if m.get("role") == "assistant"]
    status = str(info.get("exit_status") or "")
    outcome = "finished" if status == "Submitted" else "limit" if status in MINI_LIMITS else "failed"
    detail = MINI_LIMITS.get(status, "" if outcome == "finished" else status or f"exit code {code}")
    cost = float((info.get("model_stats") or {}).get("instance_cost") or 0.0)
    return AgentReport(outcome, str(info.get("submission") or "").strip(), detail,
                       sum(int(u.get("prompt_tokens") or 0) for u in usages),
                       sum(int(u.get("completion_tokens") or 0) for u in usages),
                       cost or None, reported=bool(usages))


def handoff_only(code: int | None, _output: str, _io_dir: Path) -> AgentReport:
    """A program with no report of its own: its exit code says how it ended."""
    return _by_exit_code(code)


READERS = {"claude-json": claude_report, "codex-jsonl": codex_report, "aider-lines": aider_report,
           "mini-trajectory": mini_report, "handoff": handoff_only}


def read_report(kind: str, code: int | None, output: str, io_dir: Path) -> AgentReport:
    """The report of an agent that exited with `code` (None: it was killed) after printing `output`. The
    agent wrote its report: one whose shape is not what its program writes counts as no report at all."""
    try:
        return READERS[kind](code, output, io_dir)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        return _by_exit_code(code)
