"""`cadre trace ITEM`: an item's agent transcripts, read from Redis (any machine) and printed readably."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from orchestrator.agent.reports import plain_text
from orchestrator.untrusted.text import clean_text

STYLE = {"system": "dim", "user": "cyan", "assistant": "green", "tool": "yellow", "output": "yellow", "end": "bold"}


def of_attempt(names: list[str], item_id: str, attempt: int | None) -> list[str]:
    """The transcript names of one attempt (its agent run and its conflict turns), or of all attempts."""
    if attempt is None:
        return names
    prefix = f"worker-{item_id}-{attempt}"
    return [n for n in names if n == prefix or n.startswith(f"{prefix}-")]


def print_transcript(console: Console, name: str, lines: Iterable[str]) -> None:
    """Print every entry of one transcript as a titled panel, as its lines come.

    Every title and body is cleaned of control characters and escape sequences and printed as plain
    `Text` (the rule's title escaped for markup): a transcript is model and agent text, and must neither
    drive the terminal nor open a Rich tag."""
    console.rule(escape(clean_text(name)))  # a rule's str title is markup: escaped, it keeps the usual look
    for raw in lines:
        entry = json.loads(raw)
        kind = entry.pop("type")
        if kind == "assistant":
            calls = "\n".join(f"→ {c['name']}({c['arguments']})" for c in entry.get("tool_calls", []))
            body = "\n".join(filter(None, [entry.get("content") or "", calls]))
            title = f"assistant · step {entry.get('step')} · {entry.get('tokens')} tokens"
        elif kind == "tool":
            body, title = entry.get("output", ""), f"tool {entry.get('name')}"
        elif kind in {"system", "user"}:
            body, title = entry.get("content", ""), kind
        elif kind == "command":
            body, title = shlex.join(entry.get("argv", [])), "external agent command"
        elif kind == "output":
            body, title = plain_text(entry.get("output", "")), f"agent output · exit code {entry.get('exit_code')}"
        else:
            body, title = json.dumps(entry, indent=1), kind
        # A str title would be parsed as markup by Panel whatever `markup=` says: Text keeps it literal.
        shown = Text(clean_text(str(body or "")) or "(empty)")
        console.print(Panel(shown, title=Text(clean_text(str(title))), title_align="left", style=STYLE.get(kind, "")),
                      highlight=False, markup=False)
