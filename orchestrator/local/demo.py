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
from rich.markup import escape

from orchestrator.cli.watch_view import watch_view
from orchestrator.config.settings import get_settings
from orchestrator.flow.runs import run_status
from orchestrator.local.processes import RedisServer, free_port
from orchestrator.local.sample_project import CHECK_COMMAND, GOAL, create_sample_repo
from orchestrator.local.up import LocalStack, bundled_binaries_notice, stack_environment
from orchestrator.state.records import connect
from orchestrator.state.store import Store
from orchestrator.untrusted.text import one_line

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
    for notice in bundled_binaries_notice(redis_server):
        console.print(notice, highlight=False)
    env = stack_environment(data_dir) | {"CADRE_REDIS_URL": redis_server.url, "CADRE_CHECK_COMMAND": CHECK_COMMAND,
                                         "CADRE_TICK_SECONDS": "5", "PYTHONPATH": _source_root()}
    model_server = None
    if _models_configured():
        console.print("Using the models configured in CADRE_*_MODEL.")
    else:
        from orchestrator.local.demo_model import policy
        from orchestrator.testing.scripted_model import ScriptedModelServer

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
        status = _watch(console, Store(connect(redis_server.url)), run_id, timeout, stack)
        _summary(console, status, repo, time.monotonic() - started, flower)
        return 0 if status["status"] == "done" else 1
    except StackDied as died:
        console.print(f"[bold red]error:[/] {escape(str(died))}", highlight=False)
        return 1
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


class StackDied(RuntimeError):
    """A process of the demo's stack exited; the message names it and its last error line."""


def _watch(console: Console, store: Store, run_id: str, timeout: float, stack: LocalStack) -> dict:
    """The live view until the run ends (or the timeout); StackDied as soon as a process of the stack exits."""
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            if dead := stack.failed():
                raise StackDied(f"the demo stopped: {stack.death_notice(dead)}")
            status = run_status(store, run_id)
            live.update(watch_view(status))
            if status["status"] in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(0.5)


def verdict_line(status: dict) -> str:
    """The demo's one verdict, as the run and the judge's check saw it: green only when the run ended done."""
    verdicts = [c["verdict"] for c in status["cycles"] if c.get("verdict")]
    last = verdicts[-1] if verdicts else None
    output = (last or {}).get("check_output") or ""
    if status["status"] == "done":
        return f"[bold green]Green[/]: the run ended done; the check `{CHECK_COMMAND}` passed on main"
    if "could not run in the agent sandbox" in output:
        why = escape(one_line(output.splitlines()[0].strip("[]"), 300))
        return f"[bold red]Not green[/]: {why} (run ended {status['status']})"
    reason = escape(one_line(status.get("reason") or (last or {}).get("reason") or "", 300))
    checked = "" if last is None else f"; the check {'passed' if last.get('check_passed') else 'failed'}"
    return f"[bold red]Not green[/]: the run ended {status['status']}{checked}" + (f": {reason}" if reason else "")


def _summary(console: Console, status: dict, repo: Path, seconds: float, flower: str) -> None:
    commits = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "main"], capture_output=True,
                             text=True).stdout.strip()
    landed = sum(1 for t in status["items"] if t["commit"])
    console.print(
        f"\n{verdict_line(status)} (sample project {escape(str(repo))})\n"
        f"run {status['id']} ended {status['status']} · cycles {status['cycle']} · items {len(status['tasks'])} "
        f"({landed} landed) · commits on main {commits} · {seconds:.0f} s · {status['tokens']} tokens · "
        f"${status['cost_usd']:.4f}\nFlower (while the stack ran): {flower}", highlight=False)
