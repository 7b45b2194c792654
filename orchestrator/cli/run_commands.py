"""`cadre run`, `status`, `watch`, `stop`, `report` and `trace`: starting runs and looking at them."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import cli, err, fail, guarded, open_store
from orchestrator.config.settings import get_settings
from orchestrator.untrusted.text import clean_text, one_line

POLL_SECONDS = 0.5


@cli.command()
def run(
    repo: str = typer.Option(..., help="URL or path of the git repository (the remote workers push to)."),
    goal: str = typer.Option(..., help="What the agents should achieve."),
    branch: str = typer.Option("main", help="Branch to work on."),
    max_cycles: int = typer.Option(None, help="Cycles before the run ends max_cycles (default CADRE_MAX_CYCLES)."),
    max_cost: float = typer.Option(None, help="Cost budget in USD (default CADRE_MAX_COST_USD)."),
    max_tokens: int = typer.Option(None, help="Token budget (default CADRE_MAX_TOKENS)."),
    max_hours: float = typer.Option(None, help="Wall-time budget in hours (default CADRE_MAX_HOURS)."),
    backend: str = typer.Option(None, help="Worker agent: builtin, claude-code, codex, aider, mini-swe-agent, command."),
    check: str = typer.Option(None, help="Command that must pass on the branch before the judge may say done "
                                         "(default CADRE_CHECK_COMMAND), e.g. 'pytest -q'."),
    approve_plans: bool = typer.Option(False, "--approve-plans",
                                       help="Planned items wait for `cadre approve` (or `cadre reject`) before any "
                                            "worker starts them."),
    protect: list[str] = typer.Option(None, "--protect", help="A glob of paths no worker may add, change or "
                                      "delete (repeatable; adds to CADRE_PROTECT), e.g. 'tests/*'."),
    protect_allow_planned: bool = typer.Option(False, "--protect-allow-planned",
                                               help="Planners may create items allowed to change protected paths."),
    wait: bool = typer.Option(False, "--wait", help="Block until the run ends; exit 0 only if it ends done."),
) -> None:
    """Start a run; prints its id alone on the first line."""
    from orchestrator.flow.runs import Budgets, RunRequest, start_run

    budgets = Budgets(max_cost_usd=max_cost, max_tokens=max_tokens, max_hours=max_hours)
    request = RunRequest(repo=repo, goal=goal, branch=branch, budgets=budgets, max_cycles=max_cycles,
                         backend=backend, check_command=check, approve_plans=approve_plans,
                         protect=tuple(protect or ()), protect_allow_planned=protect_allow_planned)
    new_run = guarded(lambda: start_run(open_store(), get_settings(), request))
    print(new_run.id, flush=True)
    if wait:
        raise typer.Exit(wait_for_run(new_run.id))


def wait_for_run(run_id: str) -> int:
    """Poll until the run ends, reporting progress on stderr (one plain line, never markup or an escape
    sequence); 0 if it ended done."""
    from orchestrator.flow.runs import run_status

    store = open_store()
    last = ""
    while True:
        status = run_status(store, run_id)
        landed = sum(1 for i in status["items"] if i["commit"])
        line = (f"{run_id}: {status['status']} · cycle {status['cycle']}/{status['max_cycles']} · "
                f"{len(status['items'])} items, {landed} landed · {status['tokens']} tokens · ${status['cost_usd']:.4f}")
        if line != last:
            err.print(clean_text(line), highlight=False, markup=False)
            last = line
        if store.runs.get(run_id).is_over:
            return 0 if status["status"] == "done" else 1
        time.sleep(POLL_SECONDS)


@cli.command()
def status(
    run_id: str = typer.Argument(None, help="A run id; without it, the recent runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one run (items, commits, tokens, cost) or list the recent runs."""
    from orchestrator.flow.runs import run_status

    store = guarded(open_store)
    if run_id is None:
        runs = [guarded(lambda i=i: run_status(store, i)) for i in store.runs.ids()]
        if as_json:
            print(json.dumps(runs, indent=2))
            return
        table = Table("run", "status", "cycle", "items", "tokens", "cost $", "goal")
        for r in runs:
            table.add_row(r["id"], r["status"], str(r["cycle"]), str(len(r["items"])), str(r["tokens"]),
                          f"{r['cost_usd']:.4f}", Text(one_line(r["goal"], 60)))  # Text: a cell never read as markup
        Console().print(table)
        return
    data = guarded(lambda: run_status(store, run_id))
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print_run(Console(), data)


def print_run(console: Console, data: dict) -> None:
    """A run as a tree per cycle: planner nodes, their work items with states and commits, verdicts, usage.
    Model and agent text in it is printed literally: no markup, no escape sequence reaches the terminal."""
    from orchestrator.cli.watch_view import watch_view

    console.print(watch_view(data), highlight=False)
    roles = ", ".join(f"{role} {u['tokens']} tokens ${u['cost_usd']:.4f}" for role, u in data["usage_by_role"].items())
    console.print(clean_text(f"usage by role: {roles or 'none yet'}"), highlight=False, markup=False)


@cli.command()
def watch(run_id: str = typer.Argument(..., help="The run to watch.")) -> None:
    """A live view of a run until it ends: progress per cycle, the planning tree, cost so far."""
    from orchestrator.cli.watch_view import live_watch

    store = guarded(open_store)
    guarded(lambda: store.runs.get(run_id))
    raise typer.Exit(live_watch(store, run_id, Console()))


@cli.command()
def report(
    run_id: str = typer.Argument(..., help="The run."),
    output: str = typer.Option(None, "--output", "-o", help="Write to this file instead of standard output."),
) -> None:
    """Write a Markdown report of a run: per cycle its items, landings, failures, cost, time and verdict."""
    from orchestrator.cli.run_report import markdown_report
    from orchestrator.flow.runs import run_status

    store = guarded(open_store)
    text = markdown_report(store, guarded(lambda: run_status(store, run_id)))
    if output:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
        print(output)
    else:
        print(text, end="")


@cli.command()
def trace(
    item_id: str = typer.Argument(..., help="A work item id."),
    attempt: int = typer.Option(None, min=1, help="Only this attempt (its agent run and conflict turns)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing as the agent goes on, until it ends."),
) -> None:
    """Print a work item's agent transcripts, from Redis: any machine, also when its host died."""
    from orchestrator.cli.transcript_view import of_attempt, print_transcript
    from orchestrator.state.models import ItemStatus

    store = guarded(open_store)
    item = guarded(lambda: store.items.get(item_id))
    names = of_attempt(store.transcripts.names(item_id), item_id, attempt)
    if follow:
        deadline = time.monotonic() + 30  # the agent of a just-claimed item may not have written yet
        while not names and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            names = of_attempt(store.transcripts.names(item_id), item_id, attempt)
    if not names:
        which = f"attempt {attempt} of {item_id}" if attempt else item_id
        fail(f"no transcript of {which} (status {item.status.value}, {item.attempt} attempts so far)")
    console = Console()
    for name in names:
        number = int(name.removeprefix(f"worker-{item_id}-").split("-")[0])

        def gone(number: int = number) -> bool:
            current = store.items.get(item_id)
            return current.status is not ItemStatus.RUNNING or current.attempt != number

        print_transcript(console, name, store.transcripts.lines(item.run_id, name, follow=follow, gone=gone))


@cli.command()
def stop(run_id: str = typer.Argument(..., help="The run to stop.")) -> None:
    """Stop a run: nothing new is dispatched and running agents stop at their next step."""
    from orchestrator.flow.runs import stop_run

    stopped = guarded(lambda: stop_run(open_store(), run_id))
    print(f"{run_id}: {'stopped' if stopped else 'had already ended'}")
