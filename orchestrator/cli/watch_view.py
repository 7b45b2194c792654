"""`cadre watch RUN` (and `cadre demo`'s live view): progress per cycle, the planning tree, cost.

Goals, areas, titles, verdict reasons and attempt strings were written by a user, a model or an agent:
they are cleaned of escape sequences and escaped for Rich markup before they join a markup string, so
they can neither drive the terminal nor open a tag (a `[link=...]` hyperlink, a `[/]` that breaks the view).
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from orchestrator.untrusted.text import clean_text

SETTLED = {"done", "failed", "cancelled"}


def markup_safe(value: object) -> str:
    """`value` as text that reads the same inside a Rich markup string and opens or closes no tag, with
    no control character or escape sequence. A whole line of untrusted parts is escaped in one call, so a
    `[` in one part cannot pair with a `]` in the next."""
    return escape(clean_text(str(value)))


def cycle_trees(data: dict) -> list[Tree]:
    """One tree per cycle: planner nodes (area, state, round, usage) with their items (state, commit)."""
    items = {i["id"]: i for i in data["items"]}
    trees = []
    for cycle in data["cycles"]:
        tree = Tree(f"cycle {cycle['number']} ({cycle['status']})")
        branches = {}
        for node in [n for n in data["nodes"] if n["cycle"] == cycle["number"]]:
            parent = branches.get(node["parent_id"], tree)
            counts = ", ".join(f"{v} {k}" for k, v in sorted(node["item_counts"].items())) or "no items"
            branches[node["id"]] = parent.add(
                f"[bold]{markup_safe(node['area'] or 'root planner')}[/] "
                + markup_safe(f"{node['id']} {node['status']} (round {node['round']}; "
                              f"{counts}; {node['tokens']} tokens ${node['cost_usd']:.4f})"))
            for item_id in node["items"]:
                item = items[item_id]
                commit = f" {item['commit'][:12]}" if item["commit"] else ""
                line = f"{item['handoff'] or item['status']}{commit} {item['title']}"
                leaf = branches[node["id"]].add(markup_safe(line))
                for attempt in item.get("attempts", []):
                    leaf.add(f"[dim]{markup_safe(attempt_line(attempt))}[/]")
        if cycle["verdict"]:
            verdict = cycle["verdict"]
            tree.add(markup_safe(f"verdict: {'done' if verdict['done'] else 'not done'}: {verdict['reason']}"))
        trees.append(tree)
    return trees


def attempt_line(attempt: dict) -> str:
    """One attempt: number, where it ran (host and the Celery worker's hostname), when, and how it ended: plain text, cleaned
    of control characters and escape sequences (escape it before putting it in markup)."""
    started = time.strftime("%H:%M:%S", time.gmtime(attempt["start"]))
    took = f" for {attempt['end'] - attempt['start']:.0f} s" if attempt["end"] else ""
    return clean_text(f"attempt {attempt['number']} on {attempt['host']} ({attempt['celery_hostname'] or 'no Celery worker'}) "
                      f"from {started} UTC{took}: {attempt['outcome'] or 'running'}")


def progress_table(data: dict) -> Table:
    """A progress bar per cycle: settled items out of created ones."""
    table = Table.grid(padding=(0, 1))
    for cycle in data["cycles"]:
        items = [i for i in data["items"] if i["cycle"] == cycle["number"]]
        settled = sum(1 for i in items if i["status"] in SETTLED)
        landed = sum(1 for i in items if i["commit"])
        table.add_row(f"cycle {cycle['number']}", ProgressBar(total=max(len(items), 1), completed=settled, width=40),
                      f"{settled}/{len(items)} settled, {landed} landed · {cycle['status']}")
    return table


def watch_view(data: dict) -> Group:
    """The whole live view of a run; nothing a model, an agent or a user wrote in it is markup or an escape."""
    header = Text.from_markup(
        f"[bold]{data['id']}[/] {data['status']} · cycle {data['cycle']}/{data['max_cycles']} · "
        f"{data['tokens']} tokens · ${data['cost_usd']:.4f}")
    return Group(header, Text(clean_text(data["goal"]), style="dim"), *steering_lines(data), progress_table(data),
                 *cycle_trees(data))


def steering_lines(data: dict) -> list[Text]:
    """What an operator should see at once: a paused run, what waits for approval, the latest guidance, and
    the budget's limits against what is spent."""
    lines = []
    if data.get("paused"):
        lines.append(Text(f"{data['status']}: nothing new starts (cadre resume {data['id']})", style="bold yellow"))
    waiting = [i for i in data["items"] if i["status"] == "awaiting_approval"]
    if waiting:
        titles = "; ".join(f"{i['id']} {i['title']}" for i in waiting[:5]) + (" ..." if len(waiting) > 5 else "")
        lines.append(Text(clean_text(f"{len(waiting)} items await approval (cadre approve {data['id']}): {titles}"),
                          style="bold magenta"))
    for entry in data.get("guidance", [])[-3:]:
        when = time.strftime("%H:%M", time.gmtime(entry["at"]))
        lines.append(Text(clean_text(f"guidance {when} to {entry['to']} by {entry['by']}: {entry['text']}"),
                          style="cyan"))
    if efficiency := data.get("efficiency"):
        lines.append(Text(f"efficiency: {efficiency['landed']} landed · {efficiency['landings_per_hour'] or 0:g}/h · "
                          f"{efficiency['wasted_share'] * 100:.1f} % of tokens wasted · {efficiency['conflicts']} "
                          f"conflicts · {efficiency['stalled']} stalled · {efficiency['refused']} refused", style="dim"))
    if budget := data.get("budget"):
        spent = budget["spent"]
        lines.append(Text(f"budget: ${spent['cost_usd']:.4f} of {budget['max_cost_usd'] or '-'} · "
                          f"{spent['tokens']} of {budget['max_tokens'] or '-'} tokens · "
                          f"{spent['hours']:.2f} of {budget['max_hours'] or '-'} h · "
                          f"cycle {spent['cycles']} of {budget['max_cycles']}", style="dim"))
    return lines


def live_watch(store, run_id: str, console, refresh_seconds: float = 1.0) -> int:
    """Redraw the view until the run ends; 0 if it ended done."""
    import time

    from rich.live import Live

    from orchestrator.flow.runs import run_status

    terminal = {"done", "max_cycles", "stopped", "failed", "budget_exhausted"}
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            data = run_status(store, run_id)
            live.update(watch_view(data))
            if data["status"] in terminal:
                return 0 if data["status"] == "done" else 1
            time.sleep(refresh_seconds)
