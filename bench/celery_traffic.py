"""Celery's own traffic through the one Redis: what N idle `cadre worker` processes cost it, with Celery's
defaults and with the options Cadre can do without (gossip: every worker consuming every other worker's
events; mingle: a start-up round of syncing with all the others). Prints figures; not a test.

A private redis-server; N `cadre worker --role worker` processes (threads pool, concurrency 1) started with
the CADRE_CELERY_LEAN_TRAFFIC of each mode; once every one answers a ping, Redis' counters are read twice, `--seconds` apart:
commands processed (and by command), pub/sub messages published, and Redis' CPU time (used_cpu_sys +
used_cpu_user). Each figure is a difference of Redis' own counters over that window.

    python bench/celery_traffic.py [--workers 8] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster_probes import redis_counters  # noqa: E402
from orchestrator.local.processes import CadreProcess, RedisServer  # noqa: E402

# CADRE_CELERY_LEAN_TRAFFIC of each mode: Celery's defaults, or Cadre's (no gossip, mingle, task-sent events).
MODES = {"celery defaults": "false", "Cadre's lean traffic": "true"}


def counters(client: redis.Redis) -> dict[str, float]:
    stats = {name.removeprefix("cmdstat_"): value for name, value in redis_counters(client).items()}
    stats["published"] = stats.get("publish", 0.0)
    return stats


def measure(mode: str, lean: str, workers: int, seconds: float, work: Path) -> dict:
    server = RedisServer(work / f"redis-{len(os.listdir(work))}", appendonly=False).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_")}
    env.update(CADRE_REDIS_URL=server.url, CADRE_DATA_DIR=str(work / "data"), CADRE_WORKER_MODEL="openai/bench",
               CADRE_WORKER_API_BASE="http://127.0.0.1:9/v1", CADRE_API_KEY="sk-bench", CADRE_SANDBOX="off",
               CADRE_CELERY_LEAN_TRAFFIC=lean, PYTHONPATH=str(ROOT))
    processes = [CadreProcess(["worker", "--role", "worker", "--index", str(k + 1), "--loglevel", "WARNING"], env,
                              work / f"{mode.replace(' ', '-')}-{k}.log") for k in range(workers)]
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        from orchestrator.queues.app import make_celery
        from orchestrator.config.settings import CadreSettings

        app = make_celery(CadreSettings(redis_url=server.url))
        deadline = time.monotonic() + 300
        while len(app.control.ping(timeout=1.0)) < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: not every worker answered within 300 s")
        time.sleep(5)  # start-up traffic (mingle, first heartbeats) is over
        before = counters(client)
        time.sleep(seconds)
        after = counters(client)
        answered = len(app.control.ping(timeout=2.0))
    finally:
        for process in processes:
            process.stop()
        server.stop()
    rate = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / seconds for k in after}
    top = sorted(((v, k) for k, v in rate.items() if k not in {"commands", "cpu", "published"} and v > 0),
                 reverse=True)[:5]
    return {"mode": mode, "workers": workers, "commands_per_s": rate["commands"],
            "per_worker": rate["commands"] / workers, "published_per_s": rate["published"],
            "redis_cpu_percent": rate["cpu"] * 100, "answered_ping": answered,
            "top": ", ".join(f"{name} {value:.1f}/s" for value, name in top)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cadre-celery-traffic-") as folder:
        for mode, lean in MODES.items():
            rows.append(measure(mode, lean, args.workers, args.seconds, Path(folder)))
    print("| mode | idle workers | Redis commands/s | per worker | PUBLISH/s | Redis CPU % | answered ping | top commands |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['workers']} | {r['commands_per_s']:.1f} | {r['per_worker']:.2f} | "
              f"{r['published_per_s']:.1f} | {r['redis_cpu_percent']:.2f} | {r['answered_ping']}/{r['workers']} | "
              f"{r['top']} |")


if __name__ == "__main__":
    main()
