"""Celery tasks of the `judge` queue: judging a cycle, and the periodic tick."""

from __future__ import annotations

from orchestrator.celery_app import JUDGE_CYCLE, TICK, app, time_limits
from orchestrator.settings import get_settings
from orchestrator.store import get_store
from judge.judging import judge_cycle
from judge.tick import tick


@app.task(name=JUDGE_CYCLE, **time_limits(get_settings(), "judge"))
def judge_cycle_task(run_id: str, cycle: int) -> None:
    """Judge one cycle of a run."""
    judge_cycle(get_store(), run_id, cycle)


@app.task(name=TICK, time_limit=get_settings().check_timeout_seconds + 120,
          soft_time_limit=get_settings().check_timeout_seconds + 90)
def tick_task() -> None:
    """The safety net: re-trigger whatever a lost message left waiting."""
    tick(get_store(), get_settings())
