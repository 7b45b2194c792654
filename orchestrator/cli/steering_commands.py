"""Steering a live run from any machine that reaches Redis: `cadre pause`, `resume`, `drain`, `guide`,
`budget`, `retry`, `cancel`, `approve` and `reject`. Each prints one line saying what changed; bad input gets
one `error:` line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.common import cli, fail, guarded, open_store
from orchestrator.config.settings import get_settings
from orchestrator.untrusted.text import clean_text

RUN = typer.Argument(..., help="The run.")


def _say(line: str) -> None:
    print(clean_text(line), flush=True)


@cli.command()
def pause(run_id: str = RUN) -> None:
    """Pause a run: no new attempt, planner round or cycle starts; running attempts finish and land."""
    from orchestrator.flow.steering import operator, pause_run

    _say(guarded(lambda: pause_run(open_store(), run_id, operator())))


@cli.command()
def resume(run_id: str = RUN) -> None:
    """Resume a paused (or draining) run where it was: its waiting items and planner rounds start again."""
    from orchestrator.flow.steering import operator, resume_run

    _say(guarded(lambda: resume_run(open_store(), run_id, operator())))


@cli.command()
def drain(run_id: str = RUN) -> None:
    """Pause a run, then end it `stopped` once what runs has finished (nothing committed is lost)."""
    from orchestrator.flow.steering import drain_run, operator

    _say(guarded(lambda: drain_run(open_store(), run_id, operator())))


@cli.command()
def guide(
    run_id: str = RUN,
    text: str = typer.Argument(None, help="The guidance (or --file)."),
    file: Path = typer.Option(None, "--file", help="Read the guidance from this file."),
    to: str = typer.Option("planners", "--to", help="planners (with the judge), workers, or all."),
) -> None:
    """Add guidance to a live run: every planner round and judge (and, --to workers or all, every worker)
    that starts afterwards sees all guidance so far in its prompt."""
    from orchestrator.flow.steering import add_guidance, operator

    if (text is None) == (file is None):
        fail("give the guidance as TEXT or with --file, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
    _say(guarded(lambda: add_guidance(open_store(), run_id, text, to, operator())))


@cli.command()
def budget(
    run_id: str = RUN,
    max_cost: float = typer.Option(None, "--max-cost", help="Cost budget in USD."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Token budget."),
    max_hours: float = typer.Option(None, "--max-hours", help="Wall-time budget in hours, from the run's start."),
    max_cycles: int = typer.Option(None, "--max-cycles", help="Cycles the run may take."),
) -> None:
    """Change a live run's limits; one below what is already spent ends the run at once, as if reached."""
    from orchestrator.flow.steering import change_budget, operator

    limits = {"max_cost_usd": max_cost, "max_tokens": max_tokens, "max_hours": max_hours, "max_cycles": max_cycles}
    fraction = get_settings().budgets.warning_fraction
    _say(guarded(lambda: change_budget(open_store(), run_id, limits, fraction, operator())))


@cli.command()
def retry(item_id: str = typer.Argument(..., help="A failed or cancelled work item.")) -> None:
    """Give a failed (or cancelled) item a new attempt: it is queued again."""
    from orchestrator.flow.steering import operator, retry_item

    _say(guarded(lambda: retry_item(open_store(), item_id, operator())))


@cli.command()
def cancel(item_id: str = typer.Argument(..., help="A queued, awaiting or running work item.")) -> None:
    """Cancel an item: a waiting one is dropped; a running one stops at its agent's next step, its work on a
    rescue branch. Its planner sees the outcome."""
    from orchestrator.flow.steering import cancel_item, operator

    rounds = get_settings().planning.max_rounds_per_node
    _say(guarded(lambda: cancel_item(open_store(), item_id, rounds, operator())))


@cli.command()
def approve(
    run_id: str = RUN,
    item_ids: list[str] = typer.Argument(None, help="The items to approve; without any, all that wait."),
) -> None:
    """Approve the planned items of a run started with --approve-plans: they are queued for workers."""
    from orchestrator.flow.steering import approve_items, operator

    _say(guarded(lambda: approve_items(open_store(), run_id, list(item_ids or []), operator())))


@cli.command()
def reject(
    run_id: str = RUN,
    item_ids: list[str] = typer.Argument(None, help="The items to reject."),
    reason: str = typer.Option(None, "--reason", help="Why: their planner reads it."),
) -> None:
    """Reject planned items awaiting approval: they are dropped, and their planner is told why."""
    from orchestrator.flow.steering import operator, reject_items

    if reason is None:
        fail("--reason is required: say why, the planner reads it")

    rounds = get_settings().planning.max_rounds_per_node
    _say(guarded(lambda: reject_items(open_store(), run_id, list(item_ids or []), reason, rounds, operator())))
