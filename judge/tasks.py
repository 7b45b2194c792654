"""Celery tasks of the `judge` queue: judging a cycle, and the periodic tick."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from orchestrator.celery_app import JUDGE_CYCLE, TICK, app, time_limits
from orchestrator.models import RunStatus
from orchestrator.runs import RETENTION_SECONDS
from orchestrator.settings import get_settings
from orchestrator.store import get_store
from judge.judging import judge_cycle
from judge.tick import tick


JUDGE_RETRIES = 5


@app.task(name=JUDGE_CYCLE, bind=True, max_retries=JUDGE_RETRIES, **time_limits(get_settings(), "judge"))
def judge_cycle_task(self, run_id: str, cycle: int) -> None:
    """Judge one cycle of a run; a failing judge is retried with backoff, then ends the run `failed`."""
    try:
        judge_cycle(get_store(), run_id, cycle)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if self.request.retries >= JUDGE_RETRIES:
            get_store().end_run(run_id, RunStatus.FAILED, f"judge of cycle {cycle} kept failing: {exc}"[:500],
                                RETENTION_SECONDS)
            raise
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries * 5, 120))


@app.task(name=TICK, time_limit=get_settings().check_timeout_seconds + 120,
          soft_time_limit=get_settings().check_timeout_seconds + 90)
def tick_task() -> None:
    """The safety net: re-trigger whatever a lost message left waiting."""
    tick(get_store(), get_settings())
