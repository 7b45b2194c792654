"""`cadre worker`, `beat`, `health`, `up`, `demo` and `sample-repo`: running Cadre's processes."""

from __future__ import annotations

import shlex
from importlib import import_module

import typer
from rich.console import Console

from orchestrator.cli.common import cli, err, fail, guarded, open_store
from orchestrator.config.settings import get_settings

ROLE_MODELS = {"planner": ("planner", "subplanner"), "worker": ("worker",), "judge": ("judge",)}


@cli.command()
def worker(
    role: str = typer.Option(..., help="planner, worker or judge."),
    concurrency: int = typer.Option(None, min=1, help="Agent slots: tasks this process runs at once (default 1; "
                                                       "for --role worker, CADRE_WORKER_CONCURRENCY)."),
    index: int = typer.Option(None, min=1, envvar="CADRE_NODE_INDEX",
                              help="Number of this process among several of its role on one host (its Celery worker is role-N@host)."),
    max_tasks: int = typer.Option(0, min=0, help="Stop after this many tasks (1: a Kubernetes Job per item); "
                                                  "0: serve until stopped."),
    pool: str = typer.Option("auto", envvar="CADRE_WORKER_POOL",
                             help="auto: threads for external agent programs and at concurrency 1, prefork for "
                                  "several builtin agents; prefork: a process per slot; threads: every slot a "
                                  "thread of this one process (light: an external agent's slot only waits on "
                                  "its program; a crash of the process takes all its slots down)."),
    loglevel: str = typer.Option("INFO", help="Log level."),
) -> None:
    """Serve one role's queue: planner → plan, worker → work, judge → judge (and the tick)."""
    from orchestrator.queues.names import QUEUE_BY_ROLE, TASK_MODULES_BY_ROLE

    if role not in QUEUE_BY_ROLE:
        fail(f"unknown role {role!r}: use planner, worker or judge")
    if pool not in ("auto", "prefork", "threads"):
        fail(f"unknown pool {pool!r}: use auto, prefork or threads")
    if concurrency is None:  # the variable sizes work slots only: a planner or judge sharing the .env keeps 1
        concurrency = _worker_slots() if role == "worker" else 1
    if max_tasks and concurrency != 1:
        fail("--max-tasks needs --concurrency 1")
    settings = get_settings()
    if pool == "auto":
        from orchestrator.queues.pool_memory import auto_pool

        pool = auto_pool(concurrency, external_agents=role == "worker" and settings.worker_backend != "builtin")
    for model_role in ROLE_MODELS[role]:
        if model_role == "worker" and settings.worker_backend != "builtin":
            continue
        guarded(lambda r=model_role: settings.model_for(r))
    if role == "worker":
        from orchestrator.agent.backends import check_backend

        guarded(lambda: check_backend(settings.worker_backend, settings))
    from orchestrator.agent.commands import sandbox_for
    from orchestrator.agent.sandbox import check_sandbox

    # Every role runs agent commands (or checks): refuse to start where the sandbox cannot run.
    guarded(lambda: check_sandbox(sandbox_for(settings), settings.data_dir / "sandbox-probe"))
    if role == "worker":
        from orchestrator.agent.backends import check_backend_in_sandbox

        guarded(lambda: check_backend_in_sandbox(settings.worker_backend, settings, settings.data_dir / "sandbox-probe"))
    guarded(open_store)
    import_module(TASK_MODULES_BY_ROLE[role])
    # litellm's slow import and first-call loading, done once before the pool forks, then frozen there.
    import_module("orchestrator.agent.model_access").warm_up()
    from orchestrator.config.secrets import connect_log_scrubbing
    from orchestrator.queues.app import app
    from orchestrator.queues.pool_memory import connect_pool_memory
    from orchestrator.queues.shutdown import connect_worker_signals

    if pool == "prefork":
        connect_pool_memory()
    else:
        _allow_open_files()
        from orchestrator.queues.thread_limits import connect_thread_time_limits

        connect_thread_time_limits(slots=concurrency)
    connect_worker_signals(max_tasks)
    connect_log_scrubbing()

    from orchestrator.queues.app import lean_worker_options
    from orchestrator.queues.liveness import celery_hostname

    app.worker_main(["worker", "-Q", QUEUE_BY_ROLE[role], "-c", str(concurrency), "-O", "fair",
                     "-n", celery_hostname(role, index), "--loglevel", loglevel, "-P", pool,
                     *lean_worker_options(settings), *shlex.split(settings.celery_worker_options)])


def _worker_slots() -> int:
    """`CADRE_WORKER_CONCURRENCY` (1 if unset); a value that is not a whole number from 1 up is refused."""
    import os

    text = os.environ.get("CADRE_WORKER_CONCURRENCY", "1").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        fail(f"CADRE_WORKER_CONCURRENCY={text!r} is not a number of slots (1 or more)")
    return int(text)


def _allow_open_files() -> None:
    """Every light slot holds about ten descriptors (its agent's output, pidfd, proxy sockets, a Redis
    connection): lift this process's soft limit on open files to its hard limit, as a busy server does."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@cli.command()
def beat(loglevel: str = typer.Option("INFO", help="Log level.")) -> None:
    """The scheduler (run exactly one): the judge tick, the safety net for lost triggers."""
    from orchestrator.config.secrets import connect_log_scrubbing
    from orchestrator.queues.app import app

    settings = get_settings()
    guarded(open_store)
    connect_log_scrubbing()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", loglevel, "-s", str(settings.data_dir / "celerybeat-schedule"),
               "-S", "orchestrator.queues.liveness:HeartbeatScheduler"])


@cli.command()
def health(
    role: str = typer.Option(..., help="planner, worker, judge or beat: the process to check on this host."),
    index: int = typer.Option(None, min=1, envvar="CADRE_NODE_INDEX", help="As given to cadre worker --index."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for the worker's answer."),
) -> None:
    """Liveness of this host's own process of `role` (a container healthcheck): exit 0 alive, 1 not."""
    from orchestrator.queues.liveness import beat_heartbeat_age, celery_hostname

    settings = get_settings()
    if role == "beat":
        age = beat_heartbeat_age(settings.data_dir)
        stale_after = max(3 * settings.beat_loop_seconds, 10.0)
        if age is None or age > stale_after:
            fail(f"beat has not gone round its loop for {'ever' if age is None else f'{age:.0f} s'} "
                 f"(alive means within {stale_after:.0f} s)", code=1)
        print(f"beat alive: last loop {age:.0f} s ago")
        return
    from orchestrator.queues.app import app
    from orchestrator.queues.liveness import ping_worker

    name = celery_hostname(role, index)
    if not ping_worker(app, name, timeout):
        fail(f"{name} did not answer a ping within {timeout:g} s", code=1)
    print(f"{name} alive")


@cli.command()
def metrics(
    port: int = typer.Option(9464, help="Port of the /metrics endpoint."),
    address: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 in a container)."),
) -> None:
    """Serve Cadre's own Prometheus metrics on /metrics, read from Redis (one instance serves the cluster)."""
    from orchestrator.cli.prometheus import serve

    store = guarded(open_store)
    err.print(f"Cadre metrics on http://{address}:{port}/metrics")
    serve(store, port, address)


@cli.command()
def up(
    workers: int = typer.Option(2, min=1, help="Worker processes (one agent each)."),
    flower_port: int = typer.Option(5555, help="Flower's port on 127.0.0.1 (0: no Flower)."),
) -> None:
    """The whole stack on this machine without Docker: Redis if none answers, every role, beat, Flower."""
    from orchestrator.local.up import LocalStack, serve, stack_environment

    settings = get_settings()
    for role in ("planner", "judge") + (("worker",) if settings.worker_backend == "builtin" else ()):
        guarded(lambda r=role: settings.model_for(r))
    stack = LocalStack(stack_environment(settings.data_dir), settings.data_dir, workers, flower_port or None)
    raise typer.Exit(guarded(lambda: serve(stack, err.print)))


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
