"""Where agent commands run: one seam (`Shell`) for the builtin agent's shell, external agent programs
and checks. Its callers never know whether it is sandboxed.

A command runs in its own process group, with a timeout and a cancel event; the whole group is
killed when either fires, so no grandchild outlives its command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agent.sandbox import SANDBOX_HOME, Bubblewrap, Place, Sandbox, Unsandboxed, sandbox_env
from orchestrator.config.settings import CadreSettings

CANCEL_POLL_SECONDS = 0.5


def sandbox_for(settings: CadreSettings) -> Sandbox:
    """The configured sandbox; Cadre's data directory and the user's home are hidden inside it."""
    if settings.sandbox == "off":
        return Unsandboxed()
    return Bubblewrap(hidden=(settings.data_dir.resolve(), Path.home().resolve()))


@dataclass(frozen=True)
class Shell:
    """Where one agent's (or check's) commands run: a place, inside the configured sandbox."""

    place: Place
    sandbox: Sandbox

    @property
    def workdir(self) -> Path:
        return self.place.workdir

    def run(self, command: str | list[str], timeout: float,
            cancel: threading.Event | None = None) -> tuple[int | None, str]:
        """Run a shell line (or an argv list, without a shell); see `run_command`."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        return run_command(self.sandbox.wrap(argv, self.place), self.place.workdir, timeout, cancel, self.place.env)


def shell_for(settings: CadreSettings, workdir: Path, readable: tuple[Path, ...] = (), writable: tuple[Path, ...] = (),
              env_names: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
              network: bool | None = None, home: str | None = None) -> Shell:
    """A shell in `workdir` with an allowlisted environment (`CADRE_SANDBOX_ENV` and `env_names` from this
    process's environment, plus `extra_env`); network as `CADRE_SANDBOX_NETWORK` unless `network` is given."""
    place_home = home or SANDBOX_HOME
    env = sandbox_env(dict(os.environ), (*settings.sandbox_env, *env_names), place_home, **(extra_env or {}))
    place = Place(workdir=workdir.resolve(), env=env, readable=tuple(p.resolve() for p in readable),
                  writable=tuple(p.resolve() for p in writable),
                  network=settings.sandbox_network if network is None else network, home=place_home)
    return Shell(place, sandbox_for(settings))


def run_command(command: list[str], cwd: Path, timeout: float, cancel: threading.Event | None = None,
                env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run an argv list (no shell) in its own process group; on timeout or `cancel` the whole group is killed.

    Returns (exit code, or None when it was killed, and the combined stdout and stderr).
    """
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=env,
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
