"""Footprint: resident memory of an idle worker process, and start-up time of `cadre --help` and
`cadre status`. Prints figures; not a test.

    python bench/footprint.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.local.processes import CadreProcess, RedisServer  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def timed(args: list[str], env: dict[str, str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(args, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cadre-footprint-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis").start()
        env = {**os.environ, "CADRE_REDIS_URL": redis_server.url, "CADRE_DATA_DIR": tmp,
               "CADRE_WORKER_MODEL": "openai/none", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        worker = CadreProcess(["worker", "--role", "worker", "--concurrency", "1"], env, Path(tmp) / "worker.log")
        try:
            deadline = time.monotonic() + 60
            while " ready." not in worker.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            main_rss = rss_mib(worker.process.pid)
            pool = [rss_mib(c) for c in children(worker.process.pid)]
        finally:
            worker.stop()
        cadre = [sys.executable, "-m", "orchestrator.cli.main"]
        help_s = timed(cadre + ["--help"], env)
        status_s = timed(cadre + ["status"], env)
        redis_server.stop()
    print("| what | figure |")
    print("|---|---|")
    print(f"| idle worker, main process RSS | {main_rss:.0f} MiB |")
    print(f"| idle worker, pool process RSS (concurrency 1) | {', '.join(f'{p:.0f}' for p in pool)} MiB |")
    print(f"| `cadre --help` start-up (median of 7) | {help_s * 1000:.0f} ms |")
    print(f"| `cadre status` start-up, empty Redis (median of 7) | {status_s * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
