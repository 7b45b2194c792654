"""The Celery application shared by every Cadre process: queues, routing, reliability settings.

Tasks are named here by string only; their code lives in `planners/`, `workers/` and `judge/`,
which a process imports according to its role.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from orchestrator.config.settings import CadreSettings, get_settings
from orchestrator.queues.names import CHECK_BRANCH, EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE, SWEEP_PENDING_REFS, TICK

SOFT_LIMIT_MARGIN_SECONDS = 30


def time_limits(settings: CadreSettings, role: str) -> dict[str, int]:
    """`soft_time_limit` and `time_limit` for a task of `role`, for the task decorator."""
    hard = settings.role_setting(role, "time_limit_seconds")
    return {"time_limit": hard, "soft_time_limit": max(hard - SOFT_LIMIT_MARGIN_SECONDS, 10)}


def make_celery(settings: CadreSettings) -> Celery:
    """A Celery app configured for `settings`."""
    app = Celery("cadre", broker=settings.redis_url, backend=settings.redis_url)
    visibility = {"visibility_timeout": settings.visibility_timeout_seconds}
    app.conf.update(
        task_queues=[Queue("plan"), Queue("work"), Queue("judge")],
        task_default_queue="work",
        task_routes={PLAN_NODE: {"queue": "plan"}, EXECUTE_WORK_ITEM: {"queue": "work"},
                     CHECK_BRANCH: {"queue": "work"}, SWEEP_PENDING_REFS: {"queue": "work"},
                     JUDGE_CYCLE: {"queue": "judge"}, TICK: {"queue": "judge"}},
        task_serializer="json", result_serializer="json", accept_content=["json"],
        # A message is acknowledged only when its task returns, so a dead worker's task comes back.
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        # A Redis blip must not cancel running agents: leases, fencing and claims already make the
        # redelivery that may follow harmless (it is dropped as a duplicate).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
        # Redis redelivers any unacknowledged message after this, even while its task still runs.
        broker_transport_options=visibility, result_backend_transport_options=visibility,
        # Task state reaches Flower through events; results are not stored (they are ids and None).
        task_ignore_result=True, result_expires=24 * 3600,
        result_backend_always_retry=True, result_backend_max_retries=30,
        worker_send_task_events=True, task_send_sent_event=True, task_track_started=True,
        beat_max_loop_interval=settings.beat_loop_seconds,
        # The tick is short and expires: a tick that waited a whole period is dropped, never piled up.
        beat_schedule={"cadre-tick": {"task": TICK, "schedule": settings.tick_seconds,
                                      "options": {"queue": "judge", "expires": settings.tick_seconds}}},
        timezone="UTC",
    )
    if tls := settings.redis_ssl_options():
        app.conf.update(broker_use_ssl=tls, redis_backend_use_ssl=tls)
    return app


app = make_celery(get_settings())
