"""Where agent commands run: one seam for the builtin agent's shell, external agent programs and checks.

A command runs in its own process group, with a timeout and a cancel event; the whole group is
killed when either fires, so no grandchild outlives its command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from orchestrator.config.secrets import SECRET_NAME


def command_environment() -> dict[str, str]:
    """The environment for agent commands: the process's, minus anything that looks like a secret."""
    return {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)}


CANCEL_POLL_SECONDS = 0.5


def run_command(command: str | list[str], cwd: Path, timeout: float, cancel: threading.Event | None = None,
                env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run a command (a shell line, or an argv list run without a shell) in its own process group;
    on timeout or `cancel` the whole group is killed.

    Returns (exit code, or None when it was killed, and the combined stdout and stderr).
    """
    process = subprocess.Popen(
        command, shell=isinstance(command, str), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, env=env if env is not None else command_environment(),
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            wait = min(CANCEL_POLL_SECONDS, max(deadline - time.monotonic(), 0.01))
            try:
                output, _ = process.communicate(timeout=wait)
                return process.returncode, output.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                    break
        kill_group(process.pid)
        output, _ = process.communicate()
        return None, output.decode("utf-8", "replace")
    finally:
        if process.poll() is None:
            kill_group(process.pid)
            process.wait()


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid`, if it still exists."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
