"""`cadre trace ITEM`: an agent run's JSONL transcript, printed readably."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from orchestrator.agent.reports import plain_text

STYLE = {"system": "dim", "user": "cyan", "assistant": "green", "tool": "yellow", "output": "yellow", "end": "bold"}


def transcripts_for(data_dir: Path, run_id: str, item_id: str) -> list[Path]:
    """The item's transcripts (one per attempt, plus conflict turns), oldest first."""
    folder = data_dir / "transcripts" / run_id
    return sorted(folder.glob(f"worker-{item_id}-*.jsonl"), key=lambda p: p.stat().st_mtime)


def print_transcript(console: Console, path: Path) -> None:
    """Print every entry of one transcript as a titled panel."""
    console.rule(path.name)
    for raw in path.read_text(encoding="utf-8").splitlines():
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
        console.print(Panel(body or "(empty)", title=title, title_align="left", style=STYLE.get(kind, "")),
                      highlight=False, markup=False)
