"""Hundreds of agent slots on one machine: real `cadre worker` processes (external agent backend, light
slots by default), a real planner, judge and beat, Flower watching, one private Redis. Prints a table.

Each item is a stand-in external agent (`orchestrator/testing/waiting_agent.py`) in the sandbox: it writes
one file, then waits on its model, which holds every answer `--hold` seconds (spread ±50 %, seeded), the
way real agents spend their time. The planner creates `--per-slot` items per slot at once: the first
`slots` start together (a burst), the rest each as a slot frees up. For each size, each figure measured in
that run:

- items landed per second (first item created → last handoff recorded);
- dispatch latency, p50/p99: for the burst, item created → its agent started (`item_created` →
  `agent_started` events); for the rest, the slot freed (the handoff of the item that held a slot of the
  same process) → the next agent started there: Cadre's own dispatch while a slot is free;
- landing latency, agent finished → handoff recorded, its commit on the branch, p50/p99;
- Redis commands/s and Redis CPU (% of one core), from Redis' own counters over the run;
- Celery's events and control broadcasts published per second (a pattern subscriber counts them), with
  Cadre's lean traffic (and Flower's periodic enable_events off) or as Celery and Flower set them;
- Cadre's CPU per busy slot: the CPU time of every Cadre process (workers, planner, judge, beat) over the
  run, divided by the slot-seconds agents ran; the children Cadre ran (git, sandbox, agents) apart;
- memory per slot at the moment every slot's agent waits: the worker processes' PSS and USS, and the
  sandbox's own processes (bwrap), divided by the slots; the agents' own apart;
- lost (an item not done, or its commit not on the branch) and duplicated (its trailer twice).

    python bench/slots_bench.py --slots 50 100 200 300 [--slots-per-process 100] [--hold 60] [--per-slot 2]
                                [--pool threads|prefork] [--traffic lean|celery-defaults] [--sandbox bwrap|off]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster_probes import CeleryMessages, command_line, cpu_seconds, descendants, redis_counters, slot_memory  # noqa: E402,E501
from orchestrator.config.settings import CadreSettings
from orchestrator.local.processes import CadreProcess, RedisServer, free_port
from orchestrator.queues.app import make_celery
from orchestrator.state.records import connect
from orchestrator.state.store import Store
from orchestrator.testing import waiting_agent
from orchestrator.testing.scripted_model import ScriptedModelServer, call, reply

AGENT_MARKER = "waiting_agent.py"


class Model:
    """The scripted model: the planner creates `items` items, the judge says done, every waiting agent's
    question is held `hold` seconds (±50 %). Counts the agents waiting now."""

    def __init__(self, items: int, hold: float, seed: int = 7):
        self.items, self.hold = items, hold
        self.random, self.lock, self.waiting = random.Random(seed), threading.Lock(), 0

    def __call__(self, request: dict):
        tools = {t["function"]["name"] for t in request.get("tools", [])}
        text = "\n".join(m.get("content") or "" for m in request["messages"] if m["role"] in {"system", "user"})
        if "create_task" in tools:
            if any(m["role"] == "tool" for m in request["messages"]) or "This is round" in text:
                return reply(call("finish", summary="planned"))
            return reply(*(call("create_task", title=f"write f/{k}.txt: item {k}", instructions=f"Write f/{k}.txt.")
                           for k in range(self.items)))
        if "verdict" in tools:
            return reply(call("verdict", done=True, reason="all landed"))
        with self.lock:
            self.waiting += 1
            seconds = self.hold * self.random.uniform(0.5, 1.5)
        time.sleep(seconds)
        with self.lock:
            self.waiting -= 1
        return reply(content="ok")


def dispatch_latencies(at: dict, worker_of: dict, per_process: int) -> tuple[list[float], list[float]]:
    """(burst, steady) dispatch latencies. Per worker process, its first `per_process` starts had a free slot
    from the start (created → started); each later start is matched with the earliest unmatched handoff of
    that process before it, the slot it freed (max(freed, created) → started)."""
    burst, steady = [], []
    by_process: dict[str, list[str]] = {}
    for item in sorted(at["agent_started"], key=at["agent_started"].get):
        by_process.setdefault(worker_of.get(item, "?"), []).append(item)
    for process, started in by_process.items():
        freed = sorted(at["handoff"][i] for i in at["handoff"] if worker_of.get(i) == process)
        for k, item in enumerate(started):
            if k < per_process:
                burst.append(at["agent_started"][item] - at["item_created"][item])
                continue
            slot = freed.pop(0) if freed and freed[0] <= at["agent_started"][item] else at["item_created"][item]
            steady.append(at["agent_started"][item] - max(slot, at["item_created"][item]))
    return burst, steady


def make_remote(root: Path) -> Path:
    remote, seed = root / "remote.git", root / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    for k in range(20):
        (seed / "src").mkdir(exist_ok=True)
        (seed / "src" / f"module_{k}.py").write_text(f"VALUE = {k}\n" * 50)
    subprocess.run(["git", "-C", str(seed), "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=B", "-c", "user.email=b@b", "-C", str(seed), "commit", "-qm", "seed"],
                   check=True)
    subprocess.run(["git", "-C", str(seed), "push", "-q", str(remote), "main"], check=True)
    return remote


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def flower_online(port: int) -> int:
    """Workers Flower shows online (its `flower_worker_online` gauge)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return -1
    return sum(1 for line in text.splitlines()
               if line.startswith("flower_worker_online{") and line.endswith(" 1.0") and 'worker="worker-' in line)


def cadre_cpu(pids: list[int]) -> dict[int, tuple[float, float]]:
    """(own, reaped children's) CPU seconds of each Cadre process: these and their prefork pool processes."""
    members = {pid for main in pids for pid in (main, *descendants(main))
               if pid == main or "orchestrator.cli.main" in command_line(pid)}
    return {pid: cpu_seconds(pid) for pid in members}


def trailer_counts(remote: Path) -> Counter:
    out = subprocess.run(["git", "-C", str(remote), "log", "--format=%(trailers:key=Cadre-Item,valueonly)", "main"],
                         capture_output=True, text=True, check=True).stdout
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def measure(slots: int, args: argparse.Namespace, root: Path) -> dict:
    redis_server = RedisServer(root / "redis", appendonly=False).start()
    items_wanted = slots * args.per_slot
    model = Model(items_wanted, args.hold)
    server = ScriptedModelServer(model).start()
    remote = make_remote(root)
    agent = f"{sys.executable} -I {waiting_agent.__file__} {{prompt_file}} {{handoff_file}} {{api_base}}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_")}
    env.update(CADRE_REDIS_URL=redis_server.url, CADRE_DATA_DIR=str(root / "data"), CADRE_API_KEY="sk-bench-key",
               CADRE_MAX_TASKS_PER_CYCLE=str(items_wanted), CADRE_WORKER_BACKEND="command", CADRE_WORKER_COMMAND=agent,
               CADRE_SANDBOX=args.sandbox, CADRE_CELERY_LEAN_TRAFFIC=str(args.traffic == "lean").lower(),
               CADRE_WORKER_POOL=args.pool, CADRE_TICK_SECONDS="5", LITELLM_LOCAL_MODEL_COST_MAP="True",
               PYTHONPATH=str(ROOT))
    for role in ("PLANNER", "SUBPLANNER", "WORKER", "JUDGE"):
        env[f"CADRE_{role}_MODEL"], env[f"CADRE_{role}_API_BASE"] = "openai/bench", server.base_url
    processes = max(2, math.ceil(slots / args.slots_per_process))
    per_process = math.ceil(slots / processes)
    logs = root / "logs"
    others = [CadreProcess(["worker", "--role", role, "--loglevel", "WARNING"], env, logs / f"{role}.log")
              for role in ("planner", "judge")] + [CadreProcess(["beat", "--loglevel", "WARNING"], env, logs / "beat.log")]
    workers = [CadreProcess(["worker", "--role", "worker", "--index", str(k + 1), "--concurrency", str(per_process),
                             "--loglevel", "WARNING"], env, logs / f"worker-{k + 1}.log") for k in range(processes)]
    flower_port = free_port()
    flower = CadreProcess(["--app", "orchestrator.queues.app:app", "flower", f"--port={flower_port}",
                           "--address=127.0.0.1", "--logging=warning",
                           f"--enable_events={args.traffic != 'lean'}"], env, logs / "flower.log",
                          program=[sys.executable, "-m", "celery"])
    store, client = Store(connect(redis_server.url)), connect(redis_server.url)
    app = make_celery(CadreSettings(redis_url=redis_server.url))
    messages = CeleryMessages(redis_server.url)
    cadre_pids = [p.process.pid for p in (*others, *workers)]
    try:
        deadline = time.monotonic() + 600
        while len(app.control.ping(timeout=2.0)) < processes + 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"{slots} slots: not every worker answered within 600 s")
        time.sleep(12)  # start-up traffic is over; Flower has a heartbeat of each
        messages.start()
        redis_before, cpu_before = redis_counters(client), cadre_cpu(cadre_pids)
        began = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(remote), "--goal",
                              "slots bench"], env=env, capture_output=True, text=True, check=True)
        run_id = run.stdout.split()[0]
        memory, plateau = None, 0
        while not store.runs.get(run_id).is_over:
            if memory is None and model.waiting >= slots:  # every slot's agent waits on its model now
                memory, plateau = slot_memory([w.process.pid for w in workers], AGENT_MARKER), model.waiting
            if time.monotonic() - began > args.timeout:
                raise SystemExit(f"{slots} slots: the run did not end within {args.timeout} s")
            time.sleep(0.2)
        seconds = time.monotonic() - began
        redis_after, cpu_after = redis_counters(client), cadre_cpu(cadre_pids)
        counts, channels = messages.snapshot()
        online = flower_online(flower_port)
        health = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "health", "--role", "worker",
                                 "--index", "1"], env=env, capture_output=True, text=True).returncode == 0
        status = store.runs.get(run_id).status.value
        events = store.events.read(run_id)
        items = [store.items.get(i) for i in store.items.ids_of_run(run_id)]
    finally:
        messages.stop()
        for process in (*workers, *others, flower):
            process.stop()
        server.stop()
        redis_server.stop()
    at = {kind: {} for kind in ("item_created", "item_claimed", "agent_started", "agent_finished", "handoff")}
    for event in events:
        if event.type in at:
            at[event.type].setdefault(event.data.get("item_id"), event.at)
    worker_of = {e.data.get("item_id"): e.data.get("worker") for e in events if e.type == "item_claimed"}
    # A prefork slot is a pool process of its own (its pid is the claimer); a light slot, a thread of the worker.
    burst, steady = dispatch_latencies(at, worker_of, 1 if args.pool == "prefork" else per_process)
    to_claim = [at["item_claimed"][i] - at["item_created"][i] for i in at["item_claimed"] if i in at["item_created"]]
    claim_to_start = [at["agent_started"][i] - at["item_claimed"][i] for i in at["agent_started"] if i in at["item_claimed"]]
    landing = [at["handoff"][i] - at["agent_finished"][i] for i in at["handoff"] if i in at["agent_finished"]]
    busy = sum(at["agent_finished"][i] - at["agent_started"][i] for i in at["agent_finished"] if i in at["agent_started"])
    trailers = trailer_counts(remote)
    lost = [i.id for i in items if i.status.value != "done" or trailers[i.id] == 0]
    duplicated = [i.id for i in items if trailers[i.id] > 1]
    span = max(at["handoff"].values()) - min(at["item_created"].values())
    own = sum(cpu[0] - cpu_before.get(pid, (0.0, 0.0))[0] for pid, cpu in cpu_after.items())
    children = sum(cpu[1] - cpu_before.get(pid, (0.0, 0.0))[1] for pid, cpu in cpu_after.items())
    kib = 1024 * slots
    return {
        "slots": slots, "processes": processes, "per_process": per_process, "pool": args.pool,
        "traffic": args.traffic, "status": status, "items": len(items), "seconds": seconds,
        "items_per_s": len(items) / span, "burst_p50": pct(burst, .5), "burst_p99": pct(burst, .99),
        "dispatch_p50": pct(steady, .5), "dispatch_p99": pct(steady, .99), "steady_starts": len(steady),
        "landing_p50": pct(landing, .5), "landing_p99": pct(landing, .99),
        "redis_commands_per_s": (redis_after["commands"] - redis_before["commands"]) / seconds,
        "redis_cpu_percent": 100 * (redis_after["cpu"] - redis_before["cpu"]) / seconds,
        "events_per_s": counts["events"] / seconds, "control_per_s": counts["control"] / seconds,
        "cadre_cpu_ms_per_slot_s": 1000 * own / busy, "children_cpu_ms_per_slot_s": 1000 * children / busy,
        "plateau": plateau, "to_claim_p50_p99": [pct(to_claim, .5), pct(to_claim, .99)],
        "claim_to_start_p50_p99": [pct(claim_to_start, .5), pct(claim_to_start, .99)],
        "worker_pss_mib": memory.workers_pss / kib if memory else float("nan"),
        "worker_uss_mib": memory.workers_uss / kib if memory else float("nan"),
        "sandbox_pss_mib": memory.sandbox_pss / kib if memory else float("nan"),
        "sandbox_uss_mib": memory.sandbox_uss / kib if memory else float("nan"),
        "agent_pss_mib": memory.agents_pss / kib if memory else float("nan"),
        "process_kinds": dict(memory.processes) if memory else {},
        "sandbox_uss_kib_by_kind": dict(memory.uss_by_kind) if memory else {},
        "lost": len(lost), "duplicated": len(duplicated), "lost_examples": [
            (i.status.value, (i.handoff.summary if i.handoff else "")[:300]) for i in items if i.id in lost[:3]], "flower_online": online, "health": health,
        "channels_per_s": {k: round(v / seconds, 2) for k, v in channels.most_common(8)},
        "worker_uss_mib_per_process": memory.workers_uss / 1024 / memory.processes["worker"] if memory else 0,
        "top_commands_per_s": {k.removeprefix("cmdstat_"): round((v - redis_before.get(k, 0)) / seconds, 1)
                               for k, v in sorted(redis_after.items(), key=lambda kv: redis_before.get(kv[0], 0) - kv[1])
                               [:12] if k.startswith("cmdstat_")},
    }


HEADER = ("| slots (processes × slots, pool, Celery traffic) | items/s | dispatch, slot free → start, p50 / p99 s "
          "| burst, created → start, p50 / p99 s | landing p50 / p99 s "
          "| Redis cmds/s | Redis CPU % | events/s | control/s | Cadre CPU ms per slot-s (children) "
          "| worker PSS / USS MiB per slot | sandbox PSS / USS MiB per slot | lost | dup | Flower online, health |")


def row(r: dict) -> str:
    return (f"| {r['slots']} ({r['processes']} × {r['per_process']}, {r['pool']}, {r['traffic']}) | "
            f"{r['items_per_s']:.2f} | {r['dispatch_p50']:.2f} / {r['dispatch_p99']:.2f} | "
            f"{r['burst_p50']:.2f} / {r['burst_p99']:.2f} | "
            f"{r['landing_p50']:.2f} / {r['landing_p99']:.2f} | {r['redis_commands_per_s']:.0f} | "
            f"{r['redis_cpu_percent']:.1f} | {r['events_per_s']:.1f} | {r['control_per_s']:.2f} | "
            f"{r['cadre_cpu_ms_per_slot_s']:.1f} ({r['children_cpu_ms_per_slot_s']:.1f}) | "
            f"{r['worker_pss_mib']:.2f} / {r['worker_uss_mib']:.2f} | {r['sandbox_pss_mib']:.2f} / "
            f"{r['sandbox_uss_mib']:.2f} | {r['lost']} | {r['duplicated']} | "
            f"{r['flower_online']}/{r['processes']}, {'ok' if r['health'] else 'FAILED'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--slots-per-process", type=int, default=100,
                        help="slots of one worker process (at least two processes)")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds each agent waits on its model (±50 %%)")
    parser.add_argument("--per-slot", type=int, default=2, help="items per slot, created at once")
    parser.add_argument("--pool", choices=("threads", "prefork"), default="threads")
    parser.add_argument("--traffic", choices=("lean", "celery-defaults"), default="lean")
    parser.add_argument("--sandbox", choices=("bwrap", "off"), default="bwrap")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", action="store_true", help="also print each result as JSON")
    args = parser.parse_args()
    print(f"Agents wait {args.hold:g} s ± 50 % on their model; {args.per_slot} items per slot, created at once; "
          f"sandbox {args.sandbox}; landing queue.")
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for slots in args.slots:
        with tempfile.TemporaryDirectory(prefix=f"cadre-slots-{slots}-") as tmp:
            result = measure(slots, args, Path(tmp))
        print(row(result), flush=True)
        if args.json:
            print(json.dumps(result), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
