"""The agent sandbox: every agent command and external agent program runs inside bubblewrap.

What a sandboxed command gets (see the README's "Sandbox" section for what is and is not enforced):
- its own PID namespace (no view of Cadre's processes or their `/proc/<pid>/environ`), its own IPC
  and UTS namespaces, and no network unless the place allows it;
- the system read-only; Cadre's data directory, the user's home and the container secret folders
  replaced by empty ones; then only its own worktree writable, the git cache it needs read-only
  (its config, hooks and refs cannot change), and a private `/tmp` and HOME;
- an environment built from an allowlist, never Cadre's settings or credentials.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

SANDBOX_HOME = "/tmp/home"
# Variables every sandboxed command may see (values from Cadre's own environment, if set there).
BASE_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
# Folders that hold credentials on common hosts and containers, hidden from every sandbox.
SECRET_FOLDERS = ("/run/secrets", "/var/run/secrets", "/etc/cadre")
SANDBOX_FIX = ("in Docker give the worker `security_opt: [seccomp=unconfined, apparmor=unconfined, "
               "systempaths=unconfined]` (deploy/ has it), elsewhere install bubblewrap (apt-get install "
               "bubblewrap) and allow unprivileged user namespaces; or set CADRE_SANDBOX=off to run agents "
               "unsandboxed on purpose")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run on this machine; the message says why and how to fix it (one line)."""


@dataclass(frozen=True)
class Place:
    """Where a command runs: its writable working directory and what else it may see.

    `readable` paths are exposed read-only (even inside hidden folders), `writable` ones read-write;
    `env` is the complete environment the command gets; `network` lets it reach other hosts.
    """

    workdir: Path
    env: dict[str, str]
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = False
    home: str = SANDBOX_HOME


class Sandbox(Protocol):
    def wrap(self, argv: list[str], place: Place) -> list[str]:
        """The argv that runs `argv` at `place` (the environment is passed to it as given)."""


@dataclass(frozen=True)
class Unsandboxed:
    """`CADRE_SANDBOX=off`: commands run as plain child processes of the worker."""

    def wrap(self, argv: list[str], place: Place) -> list[str]:
        return argv


@dataclass(frozen=True)
class Bubblewrap:
    """bubblewrap (`bwrap`): namespaces and bind mounts, no setuid helper needed where user namespaces work."""

    hidden: tuple[Path, ...] = ()
    binary: str = field(default_factory=lambda: shutil.which("bwrap") or "bwrap")

    def wrap(self, argv: list[str], place: Place) -> list[str]:
        args = [self.binary, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--hostname", "sandbox", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", "--dir", place.home]
        if not place.network:
            args.append("--unshare-net")
        for folder in self._hidden():
            args += ["--tmpfs", str(folder)]
        for path in (*self._runtime(), *place.readable):
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        for path in (place.workdir, *place.writable):
            args += ["--bind", str(path), str(path)]
        git_file = place.workdir / ".git"
        if git_file.is_file():  # a worktree's pointer to its git dir: the agent may not redirect Cadre's git
            args += ["--ro-bind", str(git_file), str(git_file)]
        return [*args, "--chdir", str(place.workdir), "--", *argv]

    def _hidden(self) -> list[Path]:
        folders = [*self.hidden, *(Path(p) for p in SECRET_FOLDERS)]
        return [f for f in dict.fromkeys(folders) if f.is_dir() and f != Path("/")]

    def _runtime(self) -> list[Path]:
        """The Python that runs Cadre (and its virtualenv) stay readable even inside a hidden home."""
        return [Path(p) for p in dict.fromkeys((sys.base_prefix, sys.prefix))
                if any(Path(p).is_relative_to(h) for h in self._hidden())]


def sandbox_env(source: dict[str, str], allowed: tuple[str, ...] | list[str], home: str = SANDBOX_HOME,
                **extra: str) -> dict[str, str]:
    """The environment of a sandboxed command: the allowlisted names that are set in `source`, plus a
    private HOME and TMPDIR and `extra`. Nothing else of Cadre's environment goes in."""
    env = {name: source[name] for name in (*BASE_ENV_NAMES, *allowed) if name in source}
    return env | {"HOME": home, "TMPDIR": "/tmp", "TERM": "dumb"} | extra


def check_sandbox(sandbox: Sandbox, probe_dir: Path) -> None:
    """Run a trivial command in the sandbox; SandboxUnavailable (one line, with the fix) if it cannot."""
    if isinstance(sandbox, Unsandboxed):
        return
    if isinstance(sandbox, Bubblewrap) and shutil.which(sandbox.binary) is None:
        raise SandboxUnavailable(f"the agent sandbox needs bubblewrap, which is not installed: {SANDBOX_FIX}")
    probe_dir.mkdir(parents=True, exist_ok=True)
    argv = sandbox.wrap(["sh", "-c", "test -d /proc/self && echo ok"], Place(probe_dir, {"PATH": "/usr/bin:/bin"}))
    try:
        done = subprocess.run(argv, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise SandboxUnavailable(f"the agent sandbox cannot start ({exc}): {SANDBOX_FIX}") from None
    if done.returncode != 0 or done.stdout.strip() != "ok":
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SandboxUnavailable(f"the agent sandbox cannot start here ({reason}): {SANDBOX_FIX}")
