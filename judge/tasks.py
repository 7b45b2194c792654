"""Celery tasks of the `judge` queue: judging a cycle, and the periodic tick."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from judge.judging import judge_cycle
from orchestrator.config.settings import get_settings
from orchestrator.queues.app import app
from orchestrator.queues.names import JUDGE_CYCLE, TICK
from orchestrator.recovery.tick import tick
from orchestrator.state.models import RunStatus
from orchestrator.state.store import get_store

JUDGE_RETRIES = 5


@app.task(name=JUDGE_CYCLE, bind=True, max_retries=JUDGE_RETRIES)
def judge_cycle_task(self, run_id: str, cycle: int) -> None:
    """Judge one cycle of a run; a failing judge is retried with backoff, then ends the run `failed`."""
    try:
        judge_cycle(get_store(), get_settings(), run_id, cycle)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if self.request.retries >= JUDGE_RETRIES:
            get_store().runs.end(run_id, RunStatus.FAILED, f"judge of cycle {cycle} kept failing: {exc}"[:500])
            raise
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries * 5, 120))


@app.task(name=TICK)
def tick_task() -> None:
    """The safety net: re-trigger whatever a lost message left waiting."""
    tick(get_store(), get_settings())
