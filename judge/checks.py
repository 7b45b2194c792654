"""The objective check: the configured check command run on the branch head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.agent_loop import truncate
from orchestrator.workspace_tools import run_command


@dataclass(frozen=True)
class CheckResult:
    """Outcome of the check command: `passed` is None when no command is configured."""

    command: str | None
    passed: bool | None
    output: str = ""


def run_check(command: str | None, worktree: Path, timeout: float, output_limit: int) -> CheckResult:
    """Run `command` in `worktree` (its own process group, killed on timeout); exit code 0 passes."""
    if not command:
        return CheckResult(command=None, passed=None)
    code, output = run_command(command, worktree, timeout)
    if code is None:
        output += f"\n[check timed out after {timeout:g} s]"
    return CheckResult(command=command, passed=code == 0, output=truncate(output, output_limit))
