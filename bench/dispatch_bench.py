"""Dispatch overhead on the real stack: work item created → agent start and agent finish → handoff
recorded, p50/p99, beside a raw Celery no-op round trip on the same Redis. Prints figures.

Items are "noop" (the scripted agent finishes at once and changes nothing), so the finish → handoff
figure is Cadre's own overhead without git landing; created → agent start includes the Celery
hop, the claim, and the workspace (fetch + slot reset).

    python bench/dispatch_bench.py --items 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.config.settings import CadreSettings  # noqa: E402
from orchestrator.local.processes import CadreProcess, RedisServer  # noqa: E402
from orchestrator.queues.app import make_celery  # noqa: E402
from orchestrator.state.records import connect
from orchestrator.state.store import Store  # noqa: E402
from orchestrator.testing.scripted_model import ScriptedModelServer, call, reply  # noqa: E402


def policy_for(items: int, work=None):
    """Planner: `items` tasks; judge: done; worker: `work(request, answered)` if given, else finish at once."""
    def policy(request: dict):
        tools = {t["function"]["name"] for t in request.get("tools", [])}
        answered = any(m["role"] == "tool" for m in request["messages"])
        if "create_task" in tools:
            if answered or "This is round" in request["messages"][1]["content"]:
                return reply(call("finish", summary="planned"))
            return reply(*(call("create_task", title=f"noop {k}", instructions=f"nothing {k}") for k in range(items)))
        if "verdict" in tools:
            return reply(call("verdict", done=True, reason="ok"))
        if work is not None:
            return work(request, answered)
        return reply(call("finish", summary="nothing to change"))
    return policy


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadre-dispatch-") as tmp:
        root = Path(tmp)
        redis_server = RedisServer(root / "redis").start()
        model = ScriptedModelServer(policy_for(args.items)).start()
        remote = root / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        seed = root / "seed"
        subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
        (seed / "README.md").write_text("x\n")
        subprocess.run(["git", "-C", str(seed), "add", "-A"], check=True)
        subprocess.run(["git", "-c", "user.name=B", "-c", "user.email=b@b", "-C", str(seed), "commit", "-qm", "i"], check=True)
        subprocess.run(["git", "-C", str(seed), "push", "-q", str(remote), "main"], check=True)
        env = {**os.environ, "CADRE_REDIS_URL": redis_server.url, "CADRE_DATA_DIR": str(root / "data"),
               "CADRE_API_KEY": "bench-key", "CADRE_MAX_TASKS_PER_CYCLE": str(args.items),
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
        for role in ("PLANNER", "WORKER", "JUDGE"):
            env[f"CADRE_{role}_MODEL"], env[f"CADRE_{role}_API_BASE"] = "openai/bench", model.base_url
        processes = [CadreProcess(["worker", "--role", "planner"], env, root / "p.log"),
                     CadreProcess(["worker", "--role", "worker", "--concurrency", str(args.concurrency)], env, root / "w.log"),
                     CadreProcess(["worker", "--role", "judge"], env, root / "j.log")]
        store = Store(connect(redis_server.url))
        try:
            run = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(remote), "--goal", "noop"],
                                 env=env, capture_output=True, text=True, check=True)
            run_id = run.stdout.split()[0]
            while not store.runs.get(run_id).is_over:
                time.sleep(0.2)
            created, claimed, started, finished, handoff = {}, {}, {}, {}, {}
            for event in store.events.read(run_id):
                item = event.data.get("item_id")
                {"item_created": created, "item_claimed": claimed, "agent_started": started, "agent_finished": finished,
                 "handoff": handoff}.get(event.type, {})[item] = event.at
            to_start = [started[i] - created[i] for i in started if i in created]
            to_handoff = [handoff[i] - finished[i] for i in handoff if i in finished]
            claim_to_start = [started[i] - claimed[i] for i in started if i in claimed]
            app = make_celery(CadreSettings(redis_url=redis_server.url))
            noop = []
            for _ in range(50):
                began = time.perf_counter()
                app.send_task("celery.accumulate", args=[1], queue="work", ignore_result=False).get(timeout=30)
                noop.append(time.perf_counter() - began)
            app.close()
        finally:
            for process in processes:
                process.stop()
            model.stop()
            redis_server.stop()
    print(f"| measure ({args.items} items, worker concurrency {args.concurrency}) | p50 ms | p99 ms |")
    print("|---|---|---|")
    print(f"| item created → agent start (includes waiting in the queue behind other items) | {pct(to_start, .5):.0f} | {pct(to_start, .99):.0f} |")
    print(f"| item claimed → agent start (fetch, slot reset; no queue wait) | {pct(claim_to_start, .5):.0f} | "
          f"{pct(claim_to_start, .99):.0f} |")
    print(f"| agent finish → handoff recorded (no change: no git landing) | {pct(to_handoff, .5):.0f} | {pct(to_handoff, .99):.0f} |")
    print(f"| raw Celery no-op round trip (send → result), same Redis | {pct(noop, .5):.0f} | {pct(noop, .99):.0f} |")


if __name__ == "__main__":
    main()
