"""A cgroup of its own for each sandboxed command, where the host lets Cadre make one: its pids and memory
limits hold for the command and everything it starts, together.

Inside the sandbox, `RLIMIT_NPROC` counts the sandbox's own processes, except when Cadre runs as root:
the kernel never applies that limit to processes of the root user, and a root-run sandbox's user
namespace maps to root. So for root (the build box that runs `cadre up`) the process limit comes from a
cgroup: cgroup v1's `pids` and `memory` controllers, or a cgroup v2 tree whose controllers are enabled for
children of Cadre's own cgroup. Elsewhere (not root, or no writable cgroup, as in a container) nothing
happens here and the rlimits set inside the sandbox are the limits.

The command is started by `/bin/sh`, which first writes its own pid into the cgroup and then `exec`s
the sandbox: nothing the command starts can be outside it, and no code runs between fork and exec in
Cadre's (threaded) process.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
_counter = itertools.count()


def _own_paths() -> dict[str, str]:
    """`{controller or "": path}` of this process's cgroups ("" is the cgroup v2 hierarchy)."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hierarchy, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


@lru_cache(maxsize=1)
def cgroup_parents() -> dict[str, Path]:
    """Where this process may create child cgroups, by controller (`pids`, `memory`): {} when it may not."""
    if os.geteuid() != 0:
        return {}
    try:
        own = _own_paths()
    except OSError:
        return {}
    found: dict[str, Path] = {}
    for controller in ("pids", "memory"):
        v1 = CGROUP_ROOT / controller / own.get(controller, "/").lstrip("/")
        if controller in own and v1.is_dir() and os.access(v1, os.W_OK):
            found[controller] = v1
    if not found and (CGROUP_ROOT / "cgroup.controllers").is_file() and "" in own:
        v2 = CGROUP_ROOT / own[""].lstrip("/")
        try:
            delegated = (v2 / "cgroup.subtree_control").read_text().split()
        except OSError:
            delegated = []
        if "pids" in delegated and os.access(v2, os.W_OK):
            found = {controller: v2 for controller in ("pids", "memory") if controller in delegated}
    return found


def _limits(controller: str, folder: Path, processes: int, memory_bytes: int) -> None:
    v2 = (folder / "cgroup.controllers").exists()
    if controller == "pids":
        (folder / "pids.max").write_text(str(processes))
    elif controller == "memory":
        (folder / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(memory_bytes))


def _remove(folder: Path) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                log.warning("cgroup %s still busy; left in place", folder)
                return
            for pid in (folder / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # stragglers of a command that has ended
                except ProcessLookupError:
                    pass
            time.sleep(0.05)


@contextmanager
def command_cgroup(processes: int, memory_bytes: int) -> Iterator[list[str]]:
    """The argv prefix that starts a command in a new cgroup with these limits ([] where none can be made);
    the cgroup is removed (its stragglers killed) on exit."""
    parents = cgroup_parents()
    made: list[Path] = []
    try:
        for controller, parent in parents.items():
            folder = parent / f"cadre-{os.getpid()}-{next(_counter)}"
            if folder in made:  # one cgroup v2 folder serves both controllers
                _limits(controller, folder, processes, memory_bytes)
                continue
            folder.mkdir()
            made.append(folder)
            _limits(controller, folder, processes, memory_bytes)
    except OSError as exc:
        log.warning("cannot make a cgroup for a sandboxed command (%s); rlimits only", exc)
        for folder in made:
            _remove(folder)
        made = []
    try:
        yield ["/bin/sh", "-c", ENTER, "sh", *(str(f / "cgroup.procs") for f in made), "--"] if made else []
    finally:
        for folder in made:
            _remove(folder)
