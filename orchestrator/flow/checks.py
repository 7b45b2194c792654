"""Keeping the branch green: the configured check command run on the branch head, and its history.

A check runs before each follow-up planning round (after a landing wave), on the judge's tick when
the head moved, and before every verdict. Failures go to the next planners as fix-it input, and
the judge sees the trend across cycles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from orchestrator.agent.commands import Shell
from orchestrator.agent.loop import truncate
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import worktree_shell
from orchestrator.flow.repository import repository_cache
from orchestrator.git.repo import head_sha
from orchestrator.git.runner import GitError
from orchestrator.git.workspace import worktree_slot
from orchestrator.state.keys import Keys
from orchestrator.state.models import Run, now
from orchestrator.state.store import Store

log = logging.getLogger(__name__)
HISTORY_LIMIT = 200
COMMAND_NOT_FOUND = 127  # what sh exits with when it cannot find the program a command names


@dataclass(frozen=True)
class CheckResult:
    """Outcome of the check command on one head: `passed` is None when no command is configured."""

    command: str | None
    passed: bool | None
    output: str = ""
    head: str = ""
    cycle: int = 0
    trigger: str = ""
    at: float = field(default_factory=now)
    exit_code: int | None = None

    @property
    def could_not_run(self) -> bool:
        """Whether the command was not found in the sandbox (exit 127): no cycle can make that pass."""
        return self.exit_code == COMMAND_NOT_FOUND


def run_check(command: str | None, shell: Shell, timeout: float, output_limit: int) -> CheckResult:
    """Run `command` in the shell's worktree (sandboxed, its own process group, killed on timeout); exit 0 passes."""
    if not command:
        return CheckResult(command=None, passed=None)
    worktree = shell.workdir
    code, output = shell.run(command, timeout)
    if code is None:
        output += f"\n[check timed out after {timeout:g} s]"
    elif code == COMMAND_NOT_FOUND:
        output = f"[the check could not run in the agent sandbox: {not_found_line(output)}]\n{output}"
    return CheckResult(command=command, passed=code == 0, output=truncate(output, output_limit),
                       head=head_sha(worktree), exit_code=code)


def not_found_line(output: str) -> str:
    """The shell's `... not found` line of a command that could not start (or its output's last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if "not found" in line or "No such file" in line), lines[-1] if lines else "")


def check_branch_head(store: Store, settings: CadreSettings, run: Run, cycle: int, worktree: Path,
                      trigger: str) -> CheckResult:
    """Run the run's check command on the head checked out in `worktree` and record it in the run's history."""
    result = run_check(run.check_command, worktree_shell(settings, worktree), settings.check_timeout_seconds,
                       settings.tool_output_chars)
    if result.command is None:
        return result
    result = CheckResult(**asdict(result) | {"cycle": cycle, "trigger": trigger})
    pipe = store.redis.pipeline(transaction=True)
    pipe.rpush(Keys.checks(run.id), json.dumps(asdict(result)))
    pipe.ltrim(Keys.checks(run.id), -HISTORY_LIMIT, -1)
    pipe.execute()
    store.events.emit(run.id, "check", cycle=cycle, trigger=trigger, head=result.head, passed=result.passed)
    return result


def check_history(store: Store, run_id: str) -> list[CheckResult]:
    """The run's recorded checks, oldest first."""
    known = {f.name for f in fields(CheckResult)}  # a record written by a newer version may have more
    return [CheckResult(**{k: v for k, v in json.loads(raw).items() if k in known})
            for raw in store.redis.lrange(Keys.checks(run_id), 0, -1)]


def last_checked_head(store: Store, run_id: str) -> str | None:
    """The head the most recent check ran on, if any."""
    raw = store.redis.lindex(Keys.checks(run_id), -1)
    return json.loads(raw)["head"] if raw else None


def trend(history: list[CheckResult]) -> list[dict]:
    """Per cycle: how many checks ran and failed, and whether the last one passed (for the judge)."""
    by_cycle: dict[int, dict] = {}
    for result in history:
        entry = by_cycle.setdefault(result.cycle, {"cycle": result.cycle, "runs": 0, "failures": 0, "last": None})
        entry["runs"] += 1
        entry["failures"] += result.passed is False
        entry["last"] = "passed" if result.passed else "failed"
    return [by_cycle[c] for c in sorted(by_cycle)]


def check_moved_head(store: Store, settings: CadreSettings, run_id: str) -> None:
    """Run the run's check command on the branch head if it moved since the last check (the tick's request;
    one check of a run at a time: a second request meanwhile does nothing)."""
    run = store.runs.get(run_id)
    if not run.check_command or not store.redis.set(Keys.checking(run_id), 1, nx=True,
                                                    ex=settings.check_timeout_seconds + 60):
        return
    try:
        cache = repository_cache(store, settings, run)
        head = cache.head(run.branch)
        if head != last_checked_head(store, run.id):
            with worktree_slot(cache, "check", head) as worktree:
                check_branch_head(store, settings, run, run.cycle, worktree, "tick")
    except GitError as exc:
        log.warning("run %s: cannot check the branch head: %s", run.id, exc)
    finally:
        store.redis.delete(Keys.checking(run_id))
