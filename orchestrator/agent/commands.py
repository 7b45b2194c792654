"""Where agent commands run: one seam (`Shell`) for the builtin agent's shell, external agent programs
and checks. Its callers never know whether it is sandboxed.

A command runs in its own process group, with a timeout and a cancel event; the whole group is
killed when either fires, so no grandchild outlives its command.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agent.sandbox import SANDBOX_HOME, Bridge, Bubblewrap, Place, Sandbox, Unsandboxed, sandbox_env
from orchestrator.agent.sandbox_cgroup import command_cgroup
from orchestrator.config.settings import CadreSettings

CANCEL_POLL_SECONDS = 0.5


def sandbox_for(settings: CadreSettings) -> Sandbox:
    """The configured sandbox. Never shown inside it: Cadre's data directory, its working directory (and the
    `.env` there), the home of the user running it, and the operator's `CADRE_SANDBOX_HIDDEN`."""
    sandbox = settings.sandbox
    if sandbox.mode == "off":
        return Unsandboxed()
    data = settings.data_dir.resolve()
    hidden = (data, Path.cwd().resolve(), Path.home().resolve(), *(p.resolve() for p in sandbox.hidden))
    return Bubblewrap(hidden=tuple(dict.fromkeys(hidden)), identity_dir=data / "sandbox")


def sandbox_limits(settings: CadreSettings) -> dict[str, int]:
    """Resource limits of every sandboxed command (set inside the sandbox by its first program)."""
    mib, sandbox = 1024 * 1024, settings.sandbox
    return {"NPROC": sandbox.max_processes, "DATA": sandbox.max_memory_mb * mib, "FSIZE": sandbox.max_file_mb * mib,
            "CORE": 0}


@dataclass(frozen=True)
class Shell:
    """Where one agent's (or check's) commands run: a place, inside the configured sandbox."""

    place: Place
    sandbox: Sandbox

    @property
    def workdir(self) -> Path:
        return self.place.workdir

    def run(self, command: str | list[str], timeout: float, cancel: threading.Event | None = None,
            output_path: Path | None = None) -> tuple[int | None, str]:
        """Run a shell line (or an argv list, without a shell); see `run_command`."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        limits = self.place.limits
        with command_cgroup(limits.get("NPROC", 0), limits.get("DATA", 0)) as enter:
            return run_command([*enter, *self.sandbox.wrap(argv, self.place)], self.place.workdir, timeout, cancel,
                               self.place.env, output_path)


def shell_for(settings: CadreSettings, workdir: Path, readable: tuple[Path, ...] = (), writable: tuple[Path, ...] = (),
              env_names: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
              bridge: Bridge | None = None, home: str | None = None) -> Shell:
    """A shell in `workdir` with an allowlisted environment (`CADRE_SANDBOX_ENV` and `env_names` from this
    process's environment, plus `extra_env`), the sandbox's limits, and the host's network only when
    `CADRE_SANDBOX_NETWORK` says so; with a `bridge`, the egress proxy instead (external agents)."""
    place_home, sandbox = home or SANDBOX_HOME, settings.sandbox
    env = sandbox_env(dict(os.environ), (*sandbox.env, *env_names), place_home, **(extra_env or {}))
    readable = (*readable, *sandbox.readable, *((bridge.socket.parent,) if bridge else ()))
    place = Place(workdir=workdir.resolve(), env=env, readable=tuple(p.resolve() for p in readable),
                  writable=tuple(p.resolve() for p in writable), network=sandbox.network and bridge is None,
                  home=place_home, bridge=bridge, limits=sandbox_limits(settings),
                  tmp_bytes=sandbox.max_tmp_mb * 1024 * 1024)
    return Shell(place, sandbox_for(settings))


def run_command(command: list[str], cwd: Path, timeout: float, cancel: threading.Event | None = None,
                env: dict[str, str] | None = None, output_path: Path | None = None) -> tuple[int | None, str]:
    """Run an argv list (no shell) in its own process group; on timeout or `cancel` the whole group is killed.

    Returns (exit code, or None when it was killed, and the combined stdout and stderr). With `output_path`
    the output goes to that file as it comes (others can watch it grow) and is read back at the end.
    """
    if output_path is not None:
        return _run_to_file(command, cwd, timeout, cancel, env, output_path)
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


def _run_to_file(command: list[str], cwd: Path, timeout: float, cancel: threading.Event | None,
                 env: dict[str, str] | None, output_path: Path) -> tuple[int | None, str]:
    with open(output_path, "wb") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        deadline, code = time.monotonic() + timeout, None
        try:
            with ExitWatch(process) as exited:
                while (code := exited.within(min(CANCEL_POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))) is None:
                    if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                        break
        finally:
            if process.poll() is None:
                kill_group(process.pid)
                process.wait()
    return code, output_path.read_bytes().decode("utf-8", "replace")


class ExitWatch:
    """Waits for a process to end while sleeping in the kernel (a pidfd), not in `Popen.wait`'s polling loop,
    which wakes a waiting thread up to 20 times a second: hundreds of agents' slots in one process would keep
    a core busy doing nothing. Where pidfds are missing (Linux before 5.3), `Popen.wait` it is."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.fd: int | None = None

    def __enter__(self) -> ExitWatch:
        try:
            self.fd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):
            self.fd = None
        return self

    def within(self, seconds: float) -> int | None:
        """The exit code if the process ends within `seconds`, else None."""
        if self.fd is None:
            try:
                return self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                return None
        waiting = select.poll()  # not select(): a busy worker's descriptors go past select's 1,024
        waiting.register(self.fd, select.POLLIN)
        waiting.poll(seconds * 1000)
        return self.process.poll()

    def __exit__(self, *exc_info) -> None:
        if self.fd is not None:
            os.close(self.fd)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid`, if it still exists."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
