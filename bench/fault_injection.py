"""Fault injection: K trials, each SIGKILLing a worker's process group at a random moment mid-run.

Prints, over all trials: items, landed exactly once, duplicated, lost, and the mean and worst
recovery time (from the kill to the settling of the item the dead worker held). Not a test: a
script that prints figures.

    python bench/fault_injection.py --trials 20
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.local.processes import CadreProcess, RedisServer  # noqa: E402
from orchestrator.local.scripted_model import ScriptedModelServer, call, reply  # noqa: E402
from orchestrator.state.models import TERMINAL_RUN_STATUSES  # noqa: E402
from orchestrator.state.records import connect
from orchestrator.state.store import Store  # noqa: E402

ITEMS_PER_RUN = 3


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_remote(root: Path) -> Path:
    remote, seed = root / "remote.git", root / "seed"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("bench\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "initial", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    return remote


def policy(request: dict):
    """Planner: ITEMS_PER_RUN files; workers: think 0.5-2.5 s, write their file, finish; judge: done."""
    tools = {t["function"]["name"] for t in request.get("tools", [])}
    answered = any(m["role"] == "tool" for m in request["messages"])
    text = "\n".join(m.get("content") or "" for m in request["messages"] if m["role"] == "user")
    if "create_task" in tools:
        if answered:
            return reply(call("finish", summary="planned"))
        run_tag = text.split("Goal:\n", 1)[1].split("\n", 1)[0]
        return reply(*(call("create_task", title=f"write {run_tag}-{k}.txt", instructions=f"file {k}")
                       for k in range(ITEMS_PER_RUN)))
    if "verdict" in tools:
        return reply(call("verdict", done=True, reason="files written"))
    if answered:
        return reply(call("finish", summary="written"))
    time.sleep(random.uniform(0.5, 2.5))
    path = text.split("Your task: write ", 1)[1].split("\n", 1)[0]
    return reply(call("write_file", path=path, content="x\n"))


class Bench:
    def __init__(self, root: Path, workers: int, lease: int, tick: float):
        self.root = root
        self.count = 0
        self.groups: dict[int, int] = {}
        self.redis = RedisServer(root / "redis").start()
        self.store = Store(connect(self.redis.url))
        self.model = ScriptedModelServer(policy).start()
        self.remote = make_remote(root)
        self.env = {**os.environ, "CADRE_REDIS_URL": self.redis.url, "CADRE_DATA_DIR": str(root / "data"),
                    "CADRE_LEASE_SECONDS": str(lease), "CADRE_TICK_SECONDS": str(tick),
                    "CADRE_API_KEY": "bench-key", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        for role in ("PLANNER", "WORKER", "JUDGE"):
            self.env[f"CADRE_{role}_MODEL"] = "openai/bench"
            self.env[f"CADRE_{role}_API_BASE"] = self.model.base_url
        self.others = [self.start("worker", "--role", "planner"), self.start("worker", "--role", "judge"),
                       self.start("beat")]
        self.workers = [self.start("worker", "--role", "worker") for _ in range(workers)]

    def start(self, *args: str) -> CadreProcess:
        self.count += 1
        return CadreProcess(list(args), self.env, self.root / f"process-{self.count}.log")

    def trial(self, number: int) -> dict:
        started = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(self.remote),
                                  "--goal", f"trial{number}"], env=self.env, capture_output=True, text=True)
        run_id = started.stdout.split()[0]
        deadline = time.monotonic() + 60
        while not self.claims(run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(random.uniform(0, 2.5))  # a random moment in the workers' agent runs
        holding = {self.group_of(pid) for pid in self.claims(run_id).values()}
        victim = random.choice([w for w in self.workers if w.process.pid in holding] or self.workers)
        os.killpg(victim.process.pid, signal.SIGKILL)
        killed_at = time.time()
        held = [item for item, pid in self.claims(run_id, alive_only=False).items()
                if self.group_of(pid) == victim.process.pid]
        victim.stop()
        self.workers[self.workers.index(victim)] = self.start("worker", "--role", "worker")
        while self.store.runs.get(run_id).status not in TERMINAL_RUN_STATUSES:
            time.sleep(0.1)
        return self.tally(run_id, held, killed_at)

    def group_of(self, pid: int) -> int | None:
        """The worker process group of a pool process (None once it is gone)."""
        try:
            return os.getpgid(pid)
        except ProcessLookupError:
            return self.groups.get(pid)

    def claims(self, run_id: str, alive_only: bool = True) -> dict[str, int]:
        """item → pid of the process holding its latest claim, for items not yet settled."""
        latest = {}
        for event in self.store.events.read(run_id):
            if event.type == "item_claimed":
                latest[event.data["item_id"]] = int(event.data["worker"].rsplit(":", 1)[1])
            elif event.type in {"item_settled", "item_requeued"}:
                latest.pop(event.data["item_id"], None)
        for pid in latest.values():
            if pid not in self.groups and _alive(pid):
                self.groups[pid] = os.getpgid(pid)
        return {item: pid for item, pid in latest.items() if not alive_only or _alive(pid)}

    def tally(self, run_id: str, held: list[str], killed_at: float) -> dict:
        result = {"items": 0, "once": 0, "duplicated": 0, "lost": 0, "recovery": []}
        for item in self.store.items.many(self.store.items.ids_of_run(run_id)):
            trailer = f"Cadre-Item: {item.id}"
            landed = len(git("log", "--format=%H", "--fixed-strings", f"--grep={trailer}", "main",
                             cwd=self.remote).split())
            result["items"] += 1
            result["once"] += landed == 1
            result["duplicated"] += landed > 1
            result["lost"] += landed == 0
            if item.id in held and item.settled_at and item.settled_at > killed_at:
                result["recovery"].append(item.settled_at - killed_at)
        return result

    def close(self) -> None:
        for process in self.workers + self.others:
            process.stop()
        self.model.stop()
        self.redis.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--lease-seconds", type=int, default=10)
    parser.add_argument("--tick-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadre-faults-") as tmp:
        bench = Bench(Path(tmp), args.workers, args.lease_seconds, args.tick_seconds)
        totals = {"items": 0, "once": 0, "duplicated": 0, "lost": 0, "recovery": []}
        try:
            for number in range(1, args.trials + 1):
                outcome = trial_with_progress(bench, number)
                for key in ("items", "once", "duplicated", "lost"):
                    totals[key] += outcome[key]
                totals["recovery"] += outcome["recovery"]
        finally:
            bench.close()
    recovery = totals["recovery"]
    print(f"trials                 {args.trials}")
    print(f"workers                {args.workers} (lease {args.lease_seconds} s, tick {args.tick_seconds:g} s)")
    print(f"items                  {totals['items']}")
    print(f"landed exactly once    {totals['once']}")
    print(f"duplicated             {totals['duplicated']}")
    print(f"lost                   {totals['lost']}")
    print(f"items the killed held  {len(recovery)}")
    if recovery:
        print(f"recovery mean          {statistics.mean(recovery):.1f} s")
        print(f"recovery worst         {max(recovery):.1f} s")


def trial_with_progress(bench: Bench, number: int) -> dict:
    outcome = bench.trial(number)
    print(f"trial {number}: {outcome['once']}/{outcome['items']} landed once, {outcome['duplicated']} duplicated, "
          f"{outcome['lost']} lost, recovery {[round(r, 1) for r in outcome['recovery']]}", file=sys.stderr)
    return outcome


if __name__ == "__main__":
    main()
