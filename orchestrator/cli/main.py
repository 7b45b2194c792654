"""The `cadre` command line. Commands that call no model never import litellm."""

from __future__ import annotations

import json
import sys
import time
import uuid
from importlib import import_module

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.config.settings import MissingModelError, get_settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Run many coding agents on one git repository.")
err = Console(stderr=True, soft_wrap=True)
ROLE_MODELS = {"planner": ("planner", "subplanner"), "worker": ("worker",), "judge": ("judge",)}
POLL_SECONDS = 0.5


def fail(message: str, code: int = 2) -> None:
    """Print one clear error line and exit."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _store():
    from orchestrator.state.store import get_store

    return get_store(patient=False)


def _user_errors() -> tuple[type[BaseException], ...]:
    from orchestrator.agent.backends import BackendUnavailable
    from orchestrator.flow.runs import RunRequestError
    from orchestrator.state.records import StoreUnavailable, UnknownRecord

    return (StoreUnavailable, UnknownRecord, RunRequestError, MissingModelError, BackendUnavailable)


def guarded(action):
    """Run `action()`, turning the errors a user can cause into one line and exit code 2."""
    try:
        return action()
    except _user_errors() as exc:
        fail(str(exc))


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
    wait: bool = typer.Option(False, "--wait", help="Block until the run ends; exit 0 only if it ends done."),
) -> None:
    """Start a run; prints its id alone on the first line."""
    from orchestrator.flow.runs import Budgets, start_run

    settings = get_settings()
    budgets = Budgets(max_cost_usd=max_cost, max_tokens=max_tokens, max_hours=max_hours)
    new_run = guarded(lambda: start_run(_store(), settings, repo, goal, branch, max_cycles, budgets, backend))
    print(new_run.id, flush=True)
    if wait:
        raise typer.Exit(wait_for_run(new_run.id))


def wait_for_run(run_id: str) -> int:
    """Poll until the run ends, reporting progress on stderr; 0 if it ended done."""
    from orchestrator.flow.runs import run_status
    from orchestrator.state.models import TERMINAL_RUN_STATUSES

    store = _store()
    last = ""
    while True:
        status = run_status(store, run_id)
        landed = sum(1 for t in status["tasks"] if t["commit"])
        line = (f"{run_id}: {status['status']} · cycle {status['cycle']}/{status['max_cycles']} · "
                f"{len(status['tasks'])} items, {landed} landed · {status['tokens']} tokens · ${status['cost_usd']:.4f}")
        if line != last:
            err.print(line, highlight=False)
            last = line
        if status["status"] in {s.value for s in TERMINAL_RUN_STATUSES}:
            return 0 if status["status"] == "done" else 1
        time.sleep(POLL_SECONDS)


@cli.command()
def status(
    run_id: str = typer.Argument(None, help="A run id; without it, the recent runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one run (items, commits, tokens, cost) or list the recent runs."""
    from orchestrator.flow.runs import run_status

    store = guarded(_store)
    if run_id is None:
        runs = [guarded(lambda i=i: run_status(store, i)) for i in store.runs.ids()]
        if as_json:
            print(json.dumps(runs, indent=2))
            return
        table = Table("run", "status", "cycle", "items", "tokens", "cost $", "goal")
        for r in runs:
            table.add_row(r["id"], r["status"], str(r["cycle"]), str(len(r["tasks"])), str(r["tokens"]),
                          f"{r['cost_usd']:.4f}", r["goal"][:60])
        Console().print(table)
        return
    data = guarded(lambda: run_status(store, run_id))
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print_run(Console(), data)


def print_run(console: Console, data: dict) -> None:
    """A run as a tree per cycle: planner nodes, their work items with states and commits, verdicts, usage."""
    from orchestrator.cli.watch_view import watch_view

    console.print(watch_view(data), highlight=False)
    roles = ", ".join(f"{role} {u['tokens']} tokens ${u['cost_usd']:.4f}" for role, u in data["usage_by_role"].items())
    console.print(f"usage by role: {roles or 'none yet'}", highlight=False)


@cli.command()
def watch(run_id: str = typer.Argument(..., help="The run to watch.")) -> None:
    """A live view of a run until it ends: progress per cycle, the planning tree, cost so far."""
    from orchestrator.cli.watch_view import live_watch

    store = guarded(_store)
    guarded(lambda: store.runs.get(run_id))
    raise typer.Exit(live_watch(store, run_id, Console()))


@cli.command()
def up(
    workers: int = typer.Option(2, min=1, help="Worker processes (one agent each)."),
    flower_port: int = typer.Option(5555, help="Flower's port on 127.0.0.1 (0: no Flower)."),
) -> None:
    """The whole stack on this machine without Docker: Redis if none answers, every role, beat, Flower."""
    from orchestrator.local.up import LocalStack, serve_until_interrupted, stack_environment

    settings = get_settings()
    for role in ("planner", "judge") + (("worker",) if settings.worker_backend == "builtin" else ()):
        guarded(lambda r=role: settings.model_for(r))
    stack = guarded(lambda: LocalStack(stack_environment(settings.data_dir), settings.data_dir, workers,
                                       flower_port or None).start())
    err.print(f"Cadre is up: {workers} workers, logs in {settings.data_dir / 'logs'}"
              + (f", Flower at http://127.0.0.1:{flower_port}" if flower_port else "") + ". Ctrl-C stops it.")
    serve_until_interrupted(stack, err.print)


@cli.command()
def demo(timeout: int = typer.Option(600, help="Give up after this many seconds.")) -> None:
    """One command on a fresh machine: a sample project with failing tests, made green by Cadre."""
    from orchestrator.local.demo import run_demo

    raise typer.Exit(run_demo(Console(), timeout))


@cli.command("sample-repo")
def sample_repo(path: str = typer.Argument(..., help="Where to create the bare repository.")) -> None:
    """Create the demo's sample project (failing tests) as a bare repository to point a run at."""
    from pathlib import Path

    from orchestrator.local.sample_project import GOAL, create_sample_repo

    try:
        create_sample_repo(Path(path))
    except FileExistsError:
        err.print(f"{path} exists already; keeping it")
        return
    print(path)
    err.print(f'try: cadre run --repo {path} --goal "{GOAL}" --wait')


@cli.command()
def report(
    run_id: str = typer.Argument(..., help="The run."),
    output: str = typer.Option(None, "--output", "-o", help="Write to this file instead of standard output."),
) -> None:
    """Write a Markdown report of a run: per cycle its items, landings, failures, cost, time and verdict."""
    from orchestrator.cli.run_report import markdown_report
    from orchestrator.flow.runs import run_status

    store = guarded(_store)
    text = markdown_report(store, guarded(lambda: run_status(store, run_id)))
    if output:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
        print(output)
    else:
        print(text, end="")


@cli.command()
def trace(item_id: str = typer.Argument(..., help="A work item id.")) -> None:
    """Print the transcripts of a work item's agent runs (from CADRE_DATA_DIR on this machine)."""
    from orchestrator.cli.transcript_view import print_transcript, transcripts_for

    store = guarded(_store)
    item = guarded(lambda: store.items.get(item_id))
    paths = transcripts_for(get_settings().data_dir, item.run_id, item_id)
    if not paths:
        fail(f"no transcript of {item_id} under {get_settings().data_dir}: run cadre trace where its worker ran")
    console = Console()
    for path in paths:
        print_transcript(console, path)


@cli.command()
def stop(run_id: str = typer.Argument(..., help="The run to stop.")) -> None:
    """Stop a run: nothing new is dispatched and running agents stop at their next step."""
    from orchestrator.flow.runs import stop_run

    stopped = guarded(lambda: stop_run(_store(), run_id))
    print(f"{run_id}: {'stopped' if stopped else 'had already ended'}")


@cli.command()
def worker(
    role: str = typer.Option(..., help="planner, worker or judge."),
    concurrency: int = typer.Option(1, min=1, help="Processes (one agent each)."),
    loglevel: str = typer.Option("INFO", help="Log level."),
) -> None:
    """Serve one role's queue: planner → plan, worker → work, judge → judge (and the tick)."""
    from orchestrator.queues.names import QUEUE_BY_ROLE, TASK_MODULES_BY_ROLE

    if role not in QUEUE_BY_ROLE:
        fail(f"unknown role {role!r}: use planner, worker or judge")
    settings = get_settings()
    for model_role in ROLE_MODELS[role]:
        if model_role == "worker" and settings.worker_backend != "builtin":
            continue
        guarded(lambda r=model_role: settings.model_for(r))
    if role == "worker":
        from orchestrator.agent.backends import check_backend

        guarded(lambda: check_backend(settings.worker_backend, settings))
    guarded(_store)
    import_module(TASK_MODULES_BY_ROLE[role])
    import_module("orchestrator.agent.model_access")  # litellm's slow import, done once before the pool forks
    from orchestrator.config.secrets import connect_log_scrubbing
    from orchestrator.queues.app import app
    from orchestrator.queues.shutdown import connect_worker_signals

    connect_worker_signals()
    connect_log_scrubbing()

    app.worker_main(["worker", "-Q", QUEUE_BY_ROLE[role], "-c", str(concurrency), "-O", "fair",
                     "-n", f"{role}-{uuid.uuid4().hex[:6]}@%h", "--loglevel", loglevel])


@cli.command()
def beat(loglevel: str = typer.Option("INFO", help="Log level.")) -> None:
    """The scheduler (run exactly one): the judge tick, the safety net for lost triggers."""
    from orchestrator.config.secrets import connect_log_scrubbing
    from orchestrator.queues.app import app

    settings = get_settings()
    guarded(_store)
    connect_log_scrubbing()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", loglevel, "-s", str(settings.data_dir / "celerybeat-schedule")])


def main() -> None:
    """Console-script entry point."""
    from pydantic import ValidationError

    try:
        cli()
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = "CADRE_" + "_".join(str(part) for part in problem["loc"]).upper()
        print(f"error: invalid setting {name}: {problem['msg']}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
