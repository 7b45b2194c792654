"""`cadre demo`: a sample project with a failing test suite, made green by a local Cadre stack.

With no models configured it uses the deterministic demo model (a scripted stand-in for an LLM,
labelled as such); with CADRE_*_MODEL set it uses those. Everything lives in a temporary
directory with a private, password-protected Redis (every process is its `cadre` ACL user), and
every process is stopped at the end.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from orchestrator.cli.watch_view import watch_view
from orchestrator.config.settings import get_settings
from orchestrator.flow.runs import run_status
from orchestrator.local.processes import RedisServer, free_port
from orchestrator.local.sample_project import CHECK_COMMAND, GOAL, create_sample_repo, suite_passes
from orchestrator.local.up import LocalStack, stack_environment
from orchestrator.state.records import connect
from orchestrator.state.store import Store

TERMINAL = {"done", "max_cycles", "stopped", "failed", "budget_exhausted"}


def _models_configured() -> bool:
    """Whether real models are set for every role (sub-planners fall back to the planner's)."""
    settings = get_settings()
    return all(getattr(settings, f"{role}_model") for role in ("planner", "worker", "judge"))


def run_demo(console: Console, timeout: float) -> int:
    """Run the demo end to end; 0 when the run ends done and the suite passes on the branch."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cadre-demo-"))
    data_dir = work / "data"
    repo = create_sample_repo(work / "sample.git")
    # Never an open Redis, even for a demo: agents and other local users must not reach its keys.
    redis_server = RedisServer.protected(work / "redis").start()
    env = stack_environment(data_dir) | {"CADRE_REDIS_URL": redis_server.url, "CADRE_CHECK_COMMAND": CHECK_COMMAND,
                                         "CADRE_TICK_SECONDS": "5", "PYTHONPATH": _source_root()}
    model_server = None
    if _models_configured():
        console.print("Using the models configured in CADRE_*_MODEL.")
    else:
        from orchestrator.local.demo_model import policy
        from orchestrator.local.scripted_model import ScriptedModelServer

        model_server = ScriptedModelServer(policy).start()
        env["CADRE_DEMO_MODEL_URL"] = model_server.base_url
        console.print("[bold yellow]Deterministic demo model[/]: a scripted stand-in for an LLM, no API key, "
                      "no cost. Set CADRE_PLANNER_MODEL, CADRE_WORKER_MODEL and CADRE_JUDGE_MODEL to use real ones.")
    flower_port = free_port()
    stack = LocalStack(env, data_dir, workers=2, flower_port=flower_port)
    flower = f"http://127.0.0.1:{flower_port}"
    try:
        stack.start()
        console.print(f"Sample project: {repo} (tests fail). Local stack up; Flower at {flower}")
        run_id = _start_run(env, repo)
        status = _watch(console, Store(connect(redis_server.url)), run_id, timeout)
        passed, output = suite_passes(repo)
        _summary(console, status, repo, passed, time.monotonic() - started, flower)
        if not passed:
            console.print(output)
        return 0 if status["status"] == "done" and passed else 1
    finally:
        stack.stop()
        if model_server is not None:
            model_server.stop()
        redis_server.stop()
        console.print(f"Stack stopped. Logs and transcripts kept in {work}")


def _source_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _start_run(env: dict[str, str], repo: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(repo), "--goal", GOAL,
                           "--max-cycles", "3"], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"cadre run failed: {done.stderr.strip()}")
    return done.stdout.splitlines()[0].strip()


def _watch(console: Console, store: Store, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            status = run_status(store, run_id)
            live.update(watch_view(status))
            if status["status"] in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(0.5)


def _summary(console: Console, status: dict, repo: Path, passed: bool, seconds: float, flower: str) -> None:
    commits = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "main"], capture_output=True,
                             text=True).stdout.strip()
    landed = sum(1 for t in status["tasks"] if t["commit"])
    console.print(
        f"\n[bold]{'Green' if passed else 'Not green'}[/]: the test suite {'passes' if passed else 'still fails'} "
        f"on main of {repo}\n"
        f"run {status['id']} ended {status['status']} · cycles {status['cycle']} · items {len(status['tasks'])} "
        f"({landed} landed) · commits on main {commits} · {seconds:.0f} s · {status['tokens']} tokens · "
        f"${status['cost_usd']:.4f}\nFlower (while the stack ran): {flower}")
