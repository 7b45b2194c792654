"""Scale of the state layer: 5,000 work items in one run on one Redis, worked by 500 simulated
concurrent workers (threads whose "agent" sleeps) through the real claim / lease / heartbeat /
settle transitions. Prints: all settled, none lost, Redis memory per item, planner fan-out time.

What it leaves out: Celery delivery and git (see dispatch_bench.py and integration_bench.py); 500
real worker processes do not fit on one 2-core machine.

    python bench/scale_bench.py --items 5000 --workers 500
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.flow.cycles import new_cycle  # noqa: E402
from orchestrator.local.processes import RedisServer  # noqa: E402
from orchestrator.state.models import Handoff, HandoffStatus, ItemStatus, Run, WorkItem, new_id  # noqa: E402
from orchestrator.state.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--agent-seconds", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadre-scale-") as tmp:
        redis_server = RedisServer(Path(tmp)).start()
        # One connection per simulated worker: redis-py's default pool refuses 500 concurrent threads.
        store = Store(redis.Redis.from_url(redis_server.url, decode_responses=True, max_connections=args.workers + 20))
        before = int(store.redis.info("memory")["used_memory"])
        run = Run(id=new_id("run"), repo="file:///bench.git", branch="main", goal="scale", max_cycles=1)
        cycle, root = new_cycle(run.id, 1)
        store.runs.create(run, cycle, root)
        store.nodes.start(root.id, run.id)
        began = time.perf_counter()
        ids = []
        for k in range(args.items):
            item = WorkItem(id=new_id("item"), run_id=run.id, cycle=1, node_id=root.id, title=f"task {k}",
                            instructions=f"do task {k} " + "x" * 200)
            assert store.items.add(item, args.items) == ""
            ids.append(item.id)
        fan_out = time.perf_counter() - began
        queue, lock, settled, claims = list(ids), threading.Lock(), [], [0]

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    item_id = queue.pop()
                _claim, item = store.items.claim(item_id, run.id, lease_seconds=30)
                if item is None:
                    continue
                claims[0] += 1
                time.sleep(args.agent_seconds)  # the agent
                store.items.refresh_lease(item_id, item.attempt, 30)
                done = store.items.settle(item_id, item.attempt, ItemStatus.DONE,
                                         Handoff(status=HandoffStatus.NO_CHANGE, summary="slept", attempt=item.attempt))
                if done is not None:
                    with lock:
                        settled.append(item_id)

        began = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        work = time.perf_counter() - began
        after = int(store.redis.info("memory")["used_memory"])
        statuses = [i.status for i in store.items.many(ids)]
        pending = store.redis.scard(f"cadre:node:{root.id}:pending")
        redis_server.stop()
    print(f"| measure ({args.items:,} items, {args.workers} simulated workers, agent {args.agent_seconds} s) | figure |")
    print("|---|---|")
    print(f"| planner fan-out: items recorded (atomic add with bounds) | {fan_out:.2f} s ({args.items / fan_out:,.0f} items/s) |")
    print(f"| all settled | {statuses.count(ItemStatus.DONE):,} of {args.items:,} (node pending set left: {pending}) |")
    print(f"| lost | {args.items - len(set(settled))} |")
    print(f"| claims | {claims[0]:,} (one per item) |")
    print(f"| wall time to settle everything | {work:.1f} s ({args.items / work:,.0f} items/s) |")
    print(f"| Redis memory per item (records, lists, events) | {(after - before) / args.items / 1024:.2f} KiB |")


if __name__ == "__main__":
    main()
