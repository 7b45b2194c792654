"""Footprint: memory of a worker that has run real items and idled, and start-up time of `cadre --help`
and `cadre status`. Prints figures; not a test.

A private redis-server, the scripted model server and a local bare repository; a planner and a judge,
and a `cadre worker --role worker` at each concurrency in turn. Each run's planner creates items whose
agent writes a file and finishes, so every item lands a real commit; the worker's pool processes must
all have run items (their pids are read from the items' attempts). After the run ends the worker idles,
then each of its processes is read from /proc/<pid>/smaps_rollup: PSS (shared pages divided among the
processes sharing them) and USS (Private_Clean + Private_Dirty: what the process alone holds).
The cost of an extra agent slot is (total at concurrency 4 - total at concurrency 1) / 3, both prefork;
a worker at concurrency 1 is also measured with `--pool threads` (the agent in the worker's one process),
which is what the default pool (`auto`) takes at concurrency 1.

    python bench/footprint.py [--items 12] [--idle 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.local.processes import CadreProcess, RedisServer  # noqa: E402
from orchestrator.queues.pool_memory import auto_pool  # noqa: E402
from orchestrator.testing.scripted_model import ScriptedModelServer, call, reply  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from dispatch_bench import policy_for as dispatch_policy  # noqa: E402

CADRE = [sys.executable, "-m", "orchestrator.cli.main"]


def policy_for(items: int, pause: float):
    """Planner and judge as in the dispatch bench; worker: write a file of its own, then finish."""
    def work(request: dict, answered: bool):
        time.sleep(pause)  # items overlap, so every pool process gets some
        if not answered:
            return reply(call("write_file", path=f"out/{uuid.uuid4().hex}.txt", content="footprint\n"))
        return reply(call("finish", summary="wrote a file"))
    return dispatch_policy(items, work)


def memory_kib(pid: int) -> dict[str, int]:
    """PSS and USS (Private_Clean + Private_Dirty) of `pid`, in KiB, from smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return {"pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def bare_repo(root: Path) -> Path:
    remote, seed = root / "remote.git", root / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    (seed / "README.md").write_text("footprint\n")
    subprocess.run(["git", "-C", str(seed), "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=B", "-c", "user.email=b@b", "-C", str(seed), "commit", "-qm", "i"], check=True)
    subprocess.run(["git", "-C", str(seed), "push", "-q", str(remote), "main"], check=True)
    return remote


def run_goal(env: dict[str, str], remote: Path, timeout: float = 300) -> dict:
    """`cadre run --wait` to its end; its status as JSON."""
    run = subprocess.run(CADRE + ["run", "--repo", str(remote), "--goal", "footprint", "--wait"], env=env,
                         capture_output=True, text=True, timeout=timeout)
    run_id = run.stdout.split()[0]
    status = subprocess.run(CADRE + ["status", run_id, "--json"], env=env, capture_output=True, text=True, check=True)
    report = json.loads(status.stdout)
    if report["status"] != "done":
        raise RuntimeError(f"run {run_id} ended {report['status']}:\n{run.stderr[-2000:]}")
    return report


def measure_worker(env: dict[str, str], remote: Path, root: Path, concurrency: int, pool: str, idle: float) -> dict:
    """Start a worker at `concurrency` with `pool`, run a goal through it, idle, read its processes' memory."""
    worker = CadreProcess(["worker", "--role", "worker", "--concurrency", str(concurrency), "--pool", pool], env,
                          root / f"worker-{pool}-{concurrency}.log")
    try:
        deadline = time.monotonic() + 120
        while " ready." not in worker.log():
            if time.monotonic() > deadline or worker.process.poll() is not None:
                raise RuntimeError(f"worker did not start:\n{worker.log()[-3000:]}")
            time.sleep(0.2)
        report = run_goal(env, remote)
        pool = children(worker.process.pid)
        served = {a["pid"] for t in report["items"] for a in t["attempts"]}
        agents = set(pool or [worker.process.pid])  # the threads pool runs its agent in the main process
        if agents - served:
            raise RuntimeError(f"processes {sorted(agents - served)} ran no item (served: {sorted(served)})")
        time.sleep(idle)
        return {"items": len(report["items"]), "main": memory_kib(worker.process.pid),
                "pool": [memory_kib(pid) for pid in pool]}
    finally:
        worker.stop(timeout=60)


def timed(args: list[str], env: dict[str, str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(args, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def total(measured: dict, key: str) -> int:
    return measured["main"][key] + sum(p[key] for p in measured["pool"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12, help="items per run")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds the worker idles before it is measured")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds the scripted model takes per worker call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadre-footprint-") as tmp:
        root = Path(tmp)
        redis_server = RedisServer(root / "redis").start()
        model = ScriptedModelServer(policy_for(args.items, args.pause)).start()
        remote = bare_repo(root)
        env = {**os.environ, "CADRE_REDIS_URL": redis_server.url, "CADRE_DATA_DIR": str(root / "data"),
               "CADRE_API_KEY": "bench-key", "CADRE_MAX_TASKS_PER_CYCLE": str(args.items),
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
        for role in ("PLANNER", "WORKER", "JUDGE"):
            env[f"CADRE_{role}_MODEL"], env[f"CADRE_{role}_API_BASE"] = "openai/bench", model.base_url
        help_s, status_s = timed(CADRE + ["--help"], env), timed(CADRE + ["status"], env)  # Redis still empty
        others = [CadreProcess(["worker", "--role", role], env, root / f"{role}.log") for role in ("planner", "judge")]
        try:
            measured = {(pool, c): measure_worker(env, remote, root, c, pool, args.idle)
                        for pool, c in (("prefork", 1), ("prefork", 4), ("threads", 1))}
        finally:
            for process in others:
                process.stop()
            model.stop()
            redis_server.stop()
    print(f"| worker process, after {args.items} items and {args.idle:g} s idle | PSS | USS |")
    print("|---|---|---|")
    for (pool, concurrency), m in measured.items():
        name = f"{pool}, concurrency {concurrency}" + (" (the default)" if pool == auto_pool(concurrency) else "")
        print(f"| {name}: main process | {mib(m['main']['pss'])} | {mib(m['main']['uss'])} |")
        for k, p in enumerate(m["pool"], 1):
            print(f"| {name}: pool process {k} | {mib(p['pss'])} | {mib(p['uss'])} |")
        print(f"| **{name}: total** | **{mib(total(m, 'pss'))}** | **{mib(total(m, 'uss'))}** |")
    one, four = measured[("prefork", 1)], measured[("prefork", 4)]
    per_slot = {key: (total(four, key) - total(one, key)) / 3 for key in ("pss", "uss")}
    print(f"| **each extra slot** (prefork: concurrency 4 - concurrency 1) / 3 | **{mib(per_slot['pss'])}** | "
          f"**{mib(per_slot['uss'])}** |")
    print()
    print("| start-up | figure |")
    print("|---|---|")
    print(f"| `cadre --help` (median of 7) | {help_s * 1000:.0f} ms |")
    print(f"| `cadre status`, empty Redis (median of 7) | {status_s * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
