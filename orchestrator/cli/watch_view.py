"""`cadre watch RUN` (and `cadre demo`'s live view): progress per cycle, the planning tree, cost."""

from __future__ import annotations

import time

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

SETTLED = {"done", "failed"}


def cycle_trees(data: dict) -> list[Tree]:
    """One tree per cycle: planner nodes (area, state, round, usage) with their items (state, commit)."""
    tasks = {t["id"]: t for t in data["tasks"]}
    trees = []
    for cycle in data["cycles"]:
        tree = Tree(f"cycle {cycle['number']} ({cycle['status']})")
        branches = {}
        for node in [n for n in data["nodes"] if n["cycle"] == cycle["number"]]:
            parent = branches.get(node["parent_id"], tree)
            counts = ", ".join(f"{v} {k}" for k, v in sorted(node["item_counts"].items())) or "no items"
            branches[node["id"]] = parent.add(
                f"[bold]{node['area'] or 'root planner'}[/] {node['id']} {node['status']} (round {node['round']}; "
                f"{counts}; {node['tokens']} tokens ${node['cost_usd']:.4f})")
            for item_id in node["items"]:
                task = tasks[item_id]
                commit = f" {task['commit'][:12]}" if task["commit"] else ""
                leaf = branches[node["id"]].add(f"{task['handoff'] or task['status']}{commit} {task['title']}")
                for attempt in task.get("attempts", []):
                    leaf.add(f"[dim]{attempt_line(attempt)}[/]")
        if cycle["verdict"]:
            verdict = cycle["verdict"]
            tree.add(f"verdict: {'done' if verdict['done'] else 'not done'}: {verdict['reason']}")
        trees.append(tree)
    return trees


def attempt_line(attempt: dict) -> str:
    """One attempt: number, where it ran (host and Celery node), when, and how it ended."""
    started = time.strftime("%H:%M:%S", time.gmtime(attempt["start"]))
    took = f" for {attempt['end'] - attempt['start']:.0f} s" if attempt["end"] else ""
    return (f"attempt {attempt['number']} on {attempt['host']} ({attempt['node'] or 'no node'}) from {started} UTC{took}: "
            f"{attempt['outcome'] or 'running'}")


def progress_table(data: dict) -> Table:
    """A progress bar per cycle: settled items out of created ones."""
    table = Table.grid(padding=(0, 1))
    for cycle in data["cycles"]:
        tasks = [t for t in data["tasks"] if t["cycle"] == cycle["number"]]
        settled = sum(1 for t in tasks if t["status"] in SETTLED)
        landed = sum(1 for t in tasks if t["commit"])
        table.add_row(f"cycle {cycle['number']}", ProgressBar(total=max(len(tasks), 1), completed=settled, width=40),
                      f"{settled}/{len(tasks)} settled, {landed} landed · {cycle['status']}")
    return table


def watch_view(data: dict) -> Group:
    """The whole live view of a run."""
    header = Text.from_markup(
        f"[bold]{data['id']}[/] {data['status']} · cycle {data['cycle']}/{data['max_cycles']} · "
        f"{data['tokens']} tokens · ${data['cost_usd']:.4f}")
    return Group(header, Text(data["goal"], style="dim"), progress_table(data), *cycle_trees(data))


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
