"""The Celery application shared by every Cadre process: queues, routing, reliability settings.

Tasks are named here by string only; their code lives in `planners/`, `workers/` and `judge/`,
which a process imports according to its role. Their time limits are set here too, from the settings the
app is made with (`task_annotations`), never read from the settings when a task module is imported.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from orchestrator.config.components import soft_limit_before
from orchestrator.config.settings import CadreSettings, get_settings
from orchestrator.queues.names import CHECK_BRANCH, EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE, SWEEP_PENDING_REFS, TICK

# Branch checks run the check command, then report: their limit leaves it this much time on top.
CHECK_REPORT_SECONDS = 120
SWEEP_LIMIT_SECONDS = 600


def _limits(hard_seconds: int) -> dict[str, int]:
    return {"time_limit": hard_seconds, "soft_time_limit": soft_limit_before(hard_seconds)}


def task_time_limits(settings: CadreSettings) -> dict[str, dict[str, int]]:
    """`time_limit` and `soft_time_limit` of every Cadre task, by task name, as Celery's `task_annotations`:
    set on each task when it is bound to the app (they override the task decorator's)."""
    tick_soft = max(int(settings.tick_seconds), 60)
    return {
        PLAN_NODE: _limits(settings.role("planner").time_limit_seconds),
        EXECUTE_WORK_ITEM: _limits(settings.role("worker").time_limit_seconds),
        JUDGE_CYCLE: _limits(settings.role("judge").time_limit_seconds),
        TICK: {"time_limit": tick_soft + 30, "soft_time_limit": tick_soft},
        CHECK_BRANCH: _limits(settings.check_timeout_seconds + CHECK_REPORT_SECONDS),
        SWEEP_PENDING_REFS: _limits(SWEEP_LIMIT_SECONDS),
    }


def lean_worker_options(settings: CadreSettings) -> list[str]:
    """`celery worker` options that leave out the traffic Cadre does not use (`CADRE_CELERY_LEAN_TRAFFIC`):
    gossip (every worker consuming every other worker's events, for Celery's own elections and clock
    sync), mingle (a start-up round trip with every other worker), and a heartbeat every 2 s (Flower
    reads each heartbeat's own period, so it keeps telling live workers from lost ones)."""
    if not settings.celery_lean_traffic:
        return []
    return ["--without-gossip", "--without-mingle", "--heartbeat-interval", f"{settings.celery_heartbeat_seconds:g}"]


def make_celery(settings: CadreSettings) -> Celery:
    """A Celery app configured for `settings`."""
    app = Celery("cadre", broker=settings.redis.url, backend=settings.redis.url)
    visibility: dict = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.redis.sentinel:  # kombu asks the Sentinels of the URL where the master is, after any failover too
        visibility["master_name"] = settings.redis.master_name
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
        # Flower sees a task from the worker's task-received event on; task-sent is the same news, earlier.
        worker_send_task_events=True, task_send_sent_event=not settings.celery_lean_traffic, task_track_started=True,
        beat_max_loop_interval=settings.beat_loop_seconds,
        # The tick is short and expires: a tick that waited a whole period is dropped, never piled up.
        beat_schedule={"cadre-tick": {"task": TICK, "schedule": settings.tick_seconds,
                                      "options": {"queue": "judge", "expires": settings.tick_seconds}}},
        timezone="UTC",
        task_annotations=task_time_limits(settings),
    )
    if settings.celery_lean_traffic:
        from orchestrator.queues.event_batching import EventBatching

        app.conf.cadre_event_batch_seconds = settings.celery_event_batch_seconds
        app.steps["consumer"].add(EventBatching)
    if tls := settings.redis.ssl_options():
        app.conf.update(broker_use_ssl=tls, redis_backend_use_ssl=tls)
    return app


app = make_celery(get_settings())
