"""What the slots bench reads off the machine while a run goes on: processes' memory (PSS and USS from
`/proc/<pid>/smaps_rollup`) and CPU time (`/proc/<pid>/stat`), Redis' own counters (`INFO`), and Celery's
messages through Redis pub/sub (a pattern subscriber counting every message by channel). Every figure the
bench prints comes from these readings; none is computed from a model of what it should be."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The pids whose parent is `pid` (every thread's children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    out, stack = [], children_of(pid)
    while stack:
        child = stack.pop()
        out.append(child)
        stack += children_of(child)
    return out


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, USS) of `pid` in KiB; (0, 0) if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields.get("Pss", 0), fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own CPU, CPU of its reaped children) of `pid` in seconds; (0, 0) if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(fields[k]) for k in (11, 12, 13, 14))
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


@dataclass
class SlotMemory:
    """Memory of the worker processes and of what each slot starts, summed, in KiB, at one moment."""

    workers_pss: int = 0
    workers_uss: int = 0
    sandbox_pss: int = 0  # bwrap and the bridge in each sandbox: Cadre's per-slot processes
    sandbox_uss: int = 0
    agents_pss: int = 0  # the agent programs themselves (not Cadre's)
    processes: Counter = field(default_factory=Counter)
    uss_by_kind: Counter = field(default_factory=Counter)


def slot_memory(worker_pids: list[int], agent_marker: str) -> SlotMemory:
    """Memory of the worker processes (and their prefork children), and of every process they started:
    agent programs (whose command line holds `agent_marker`) apart from the sandbox's own."""
    memory = SlotMemory()
    for pid in worker_pids:
        for member in [pid, *descendants(pid)]:
            line = command_line(member)
            pss, uss = memory_kib(member)
            if member == pid or "orchestrator.cli.main" in line:
                memory.workers_pss, memory.workers_uss = memory.workers_pss + pss, memory.workers_uss + uss
                memory.processes["worker"] += 1
            elif agent_marker in line and " -S -c " not in line and "bwrap" not in line.split(" ", 1)[0]:
                memory.agents_pss += pss
                memory.processes["agent"] += 1
            else:
                memory.sandbox_pss, memory.sandbox_uss = memory.sandbox_pss + pss, memory.sandbox_uss + uss
                program = Path(line.split(" ", 1)[0]).name
                kind = program if program == "bwrap" else "bridge" if " -S -c " in line else program or "?"
                memory.processes[kind] += 1
                memory.uss_by_kind[kind] += uss
    return memory


def redis_counters(client: redis.Redis) -> dict[str, float]:
    """Commands processed (in all, and `cmdstat_<command>` each) and CPU seconds of the Redis server so far."""
    info = client.info("all")
    counters = {"commands": float(info["total_commands_processed"]),
                "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"])}
    for name, value in info.items():
        if name.startswith("cmdstat_"):
            counters[name] = float(value["calls"])
    return counters


class CeleryMessages:
    """Counts every message published through Redis pub/sub, by kind: Celery's events (`celeryev`), its
    control broadcasts and replies (`pidbox`), anything else. A subscriber of its own, on its own thread."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.counts: Counter = Counter()
        self.by_channel: Counter = Counter()
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _on_message(self, message: dict) -> None:
        channel = message["channel"].decode(errors="replace")
        kind = "events" if "celeryev" in channel else "control" if "pidbox" in channel else "other"
        with self.lock:
            self.counts[kind] += 1
            self.by_channel[channel] += 1

    def start(self) -> CeleryMessages:
        self.pubsub.psubscribe(**{"*": self._on_message})
        self._thread = self.pubsub.run_in_thread(sleep_time=0.5, daemon=True)
        return self

    def snapshot(self) -> tuple[Counter, Counter]:
        with self.lock:
            return Counter(self.counts), Counter(self.by_channel)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
        self.pubsub.close()
        self.client.close()
