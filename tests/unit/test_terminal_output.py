"""Nothing a model, an agent or a user wrote reaches the operator's terminal as an escape sequence or as
Rich markup: `cadre trace`, `cadre watch` / `status` / `demo`, `cadre report`, `run --wait`, `error:` lines.

The views are rendered by a real Rich console forced into a truecolor terminal; only the colour (SGR)
sequences Rich itself emits may remain in what it wrote."""

from __future__ import annotations

import io
import re

import pytest
import typer
from rich.console import Console

from orchestrator.agent.loop import Transcript
from orchestrator.cli.common import fail
from orchestrator.cli.run_commands import print_run
from orchestrator.cli.run_report import report_text, table_cell
from orchestrator.cli.transcript_view import print_transcript
from orchestrator.cli.watch_view import attempt_line, watch_view
from orchestrator.state.models import Handoff, HandoffStatus, ItemStatus, WorkItem

MARKUP = "[link=https://evil.example]x[/link] [/]"
# Clipboard write, hyperlink, window title, clear screen, then the 8-bit CSI and OSC forms, then Rich markup.
HOSTILE = ("\x1b]52;c;ZXZpbCBjbGlwYm9hcmQ=\x07\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
           "\x1b]0;owned\x07\x1b[2J\x1b[H\x9b2J\x9d0;owned\x9c" + MARKUP)
SGR = re.compile(r"\x1b\[[0-9;]*m")
DANGEROUS = re.compile(r"\x1b\]|\x07|[\x80-\x9f]|\x1b\[[0-9;?]*[A-LN-Za-ln-z@`]|\x1b[P_^X]")


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=400)


def assert_harmless(out: str) -> str:
    """`out` holds no escape sequence but Rich's own colours and no control but newlines; returns it
    without the colours (the text as the operator reads it)."""
    assert not DANGEROUS.search(out), repr(DANGEROUS.search(out))
    assert "\x1b[2J" not in out and "\x1b]8" not in out  # no clear screen, no hyperlink
    plain = SGR.sub("", out)
    assert "\x1b" not in plain, repr(plain)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", plain), repr(plain)
    return plain


# -- cadre trace ----------------------------------------------------------------------------------------

def write_transcript(tmp_path) -> list[str]:
    """Every kind of entry, each carrying the hostile text, written as the agent loop and the external
    agent runner write them."""
    transcript = Transcript(tmp_path / "t.jsonl")
    transcript.write("system", content="system prompt " + HOSTILE)
    transcript.write("user", content="user prompt " + HOSTILE)
    call = {"id": "c1", "name": "bash" + HOSTILE, "arguments": '{"command": "ls ' + HOSTILE + '"}'}
    transcript.write("assistant", step=1, content="assistant says " + HOSTILE, tool_calls=[call],
                     tokens=12, cost_usd=0.0, model="scripted")
    transcript.write("tool", name="tool-name " + MARKUP, call_id="c1", output="tool output " + HOSTILE)
    transcript.write("command", argv=["claude", "-p", "agent command " + HOSTILE])
    transcript.write("output", exit_code=0, output="agent output " + HOSTILE)
    transcript.write("end", status="finished " + HOSTILE, steps=1, tokens=12, cost_usd=0.0, final_tool="finish")
    transcript.write("odd-kind " + MARKUP, note="odd entry " + HOSTILE)
    transcript.close()
    return (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()


def test_trace_prints_every_entry_kind_without_escapes_or_markup(tmp_path):
    out = console()
    print_transcript(out, "worker-item-1-1 " + HOSTILE, write_transcript(tmp_path))
    plain = assert_harmless(out.file.getvalue())
    for text in ("system prompt", "user prompt", "assistant says", "→ bash", "tool output", "agent command",
                 "agent output", "finished", "odd entry"):
        assert text in plain, text
    # Markup in bodies and in panel titles is shown as written, not obeyed.
    assert f"tool tool-name {MARKUP}" in plain
    assert f"odd-kind {MARKUP}" in plain
    assert f"tool output click{MARKUP}" in plain


def test_trace_still_shows_an_empty_body():
    out = console()
    print_transcript(out, "worker-item-1-1", ['{"type": "user", "content": null}'])
    assert "(empty)" in assert_harmless(out.file.getvalue())


# -- cadre watch / status / demo -----------------------------------------------------------------------

def run_status_dict(text: str) -> dict:
    """A run's status JSON in the shape `orchestrator.flow.runs.run_status` returns, with `text` wherever a
    user, a model or an agent writes."""
    attempt = {"number": 1, "host": "host-" + text, "celery_hostname": "worker@" + text, "pid": 7, "start": 1_700_000_000.0,
               "end": 1_700_000_042.0, "outcome": "failed: " + text}
    split_attempt = {"number": 2, "host": "[link=https://evil.example", "celery_hostname": "x]", "pid": 8,
                     "start": 1_700_000_100.0, "end": None, "outcome": None}
    return {
        "id": "run-1", "status": "running", "reason": "ended: " + text, "repo": "/srv/repo.git", "branch": "main",
        "goal": "Make the tests pass " + text, "cycle": 1, "max_cycles": 3, "created_at": 1_700_000_000.0,
        "ended_at": None,
        "items": [{"id": "item-1", "title": "Fix the parser " + text, "status": "failed", "cycle": 1, "attempt": 2,
                   "commit": "0123456789abcdef0123", "handoff": "failed", "attempts": [attempt, split_attempt]}],
        "cycles": [{"number": 1, "status": "judging",
                    "verdict": {"done": False, "reason": "tests still fail " + text, "next_focus": "focus " + text,
                                "check_passed": False, "check_output": "check " + text}}],
        "nodes": [
            {"id": "node-root", "parent_id": None, "cycle": 1, "depth": 0, "area": "", "status": "running",
             "round": 1, "items": [], "item_counts": {}, "summary": "root summary " + text, "tokens": 10,
             "cost_usd": 0.001},
            {"id": "node-sub", "parent_id": "node-root", "cycle": 1, "depth": 1, "area": "the parser " + text,
             "status": "finished", "round": 2, "items": ["item-1"], "item_counts": {"failed": 1},
             "summary": "sub summary " + text, "tokens": 20, "cost_usd": 0.002},
        ],
        "cost_usd": 0.003, "tokens": 30,
        "usage_by_role": {"planner": {"tokens": 30, "cost_usd": 0.003}},
        "usage_unreported_calls": 0,
        "budgets": {"max_cost_usd": None, "max_tokens": None, "max_hours": None},
        "worker_backend": "builtin",
    }


def test_status_view_shows_model_text_literally():
    out = console()
    print_run(out, run_status_dict(HOSTILE))
    plain = assert_harmless(out.file.getvalue())
    assert "Make the tests pass click" + MARKUP in plain
    assert "the parser click" + MARKUP in plain
    assert "failed 0123456789ab Fix the parser click" + MARKUP in plain
    assert "verdict: not done: tests still fail click" + MARKUP in plain
    assert "host-click" + MARKUP in plain and "failed: click" + MARKUP in plain
    # A `[` in one field cannot pair with a `]` in the next into a tag.
    assert "attempt 2 on [link=https://evil.example (x]) from" in plain
    assert "usage by role: planner 30 tokens $0.0030" in plain


def test_live_view_shows_model_text_literally():
    out = console()
    out.print(watch_view(run_status_dict(HOSTILE)))  # as Live draws it: markup on, highlighting on
    plain = assert_harmless(out.file.getvalue())
    assert "Fix the parser click" + MARKUP in plain
    assert "verdict: not done: tests still fail click" + MARKUP in plain


def test_status_view_of_plain_text_looks_as_before():
    out = console()
    print_run(out, run_status_dict("ok"))
    rendered = out.file.getvalue()
    plain = assert_harmless(rendered)
    assert "run-1 running · cycle 1/3 · 30 tokens · $0.0030" in plain
    assert "the parser ok node-sub finished (round 2; 1 failed; 20 tokens $0.0020)" in plain
    assert "root planner node-root running (round 1; no items; 10 tokens $0.0010)" in plain
    assert "attempt 1 on host-ok (worker@ok) from 22:13:20 UTC for 42 s: failed: ok" in plain
    assert "\x1b[1mthe parser ok" in rendered  # the area is still bold


def test_attempt_line_is_clean_text():
    line = attempt_line(run_status_dict(HOSTILE)["items"][0]["attempts"][0])
    assert "\x1b" not in line and "\x07" not in line and MARKUP in line


# -- cadre report ---------------------------------------------------------------------------------------

def report_items(text: str) -> list[WorkItem]:
    handoff = Handoff(status=HandoffStatus.FAILED, summary="summary " + text, rescue_branch="cadre/rescue/item-1",
                      tokens=99, cost_usd=0.01, seconds=42.0)
    return [WorkItem(id="item-1", run_id="run-1", cycle=1, node_id="node-sub", title="Fix | the\tparser " + text,
                     instructions="do it " + text, status=ItemStatus.FAILED, handoff=handoff),
            WorkItem(id="item-2", run_id="run-1", cycle=1, node_id="node-sub", title="a \\| b \\\\| c",
                     instructions="do it", status=ItemStatus.QUEUED)]


def table_columns(row: str) -> list[str]:
    """The cells of a GFM table row: split at every `|` that a backslash does not escape."""
    cells, current, chars = [], "", iter(row.strip().strip("|"))
    for char in chars:
        if char == "\\":
            current += char + next(chars, "")
        elif char == "|":
            cells.append(current)
            current = ""
        else:
            current += char
    return cells + [current]


def test_markdown_report_holds_no_control_character_and_keeps_its_columns():
    status = run_status_dict(HOSTILE)
    status["items"].append({"id": "item-2", "title": "a \\| b \\\\| c", "status": "queued", "cycle": 1,
                            "attempt": 0, "commit": None, "handoff": None, "attempts": []})
    text = report_text(status, {"cycle:1:cost_usd": 0.01, "cycle:1:tokens": 99.0}, {1: report_items(HOSTILE)})
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), repr(text)
    assert "- goal: Make the tests pass click" + MARKUP in text
    assert "**Verdict:** not done: tests still fail click" + MARKUP in text
    header = text.splitlines().index("| item | title | status | commit | tokens | cost | seconds |")
    item_rows = text.splitlines()[header + 2:header + 4]
    for row in item_rows:
        assert len(table_columns(row)) == 7, row
    assert item_rows[0].startswith("| item-1 | Fix \\| the parser click")
    assert item_rows[1].startswith("| item-2 | a \\\\\\| b \\\\\\\\\\| c |")
    attempt_rows = [line for line in text.splitlines() if line.startswith("| item-1 | 1 |")]
    assert attempt_rows and len(table_columns(attempt_rows[0])) == 7


def test_table_cell_leaves_plain_text_alone():
    assert table_cell("Fix the parser (C:\\temp)") == "Fix the parser (C:\\temp)"
    assert table_cell("a|b") == "a\\|b"


# -- error lines ----------------------------------------------------------------------------------------

def test_error_line_is_cleaned(capsys):
    with pytest.raises(typer.Exit):
        fail("git said: " + HOSTILE)
    err = capsys.readouterr().err
    assert err.startswith("error: git said: click")
    assert "\x1b" not in err and "\x07" not in err and not re.search(r"[\x80-\x9f]", err)
