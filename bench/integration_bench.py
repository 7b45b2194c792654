"""Integration throughput: N concurrent workers landing no-op-agent commits, `direct` beside `queue`.

Each worker is a thread with its own worktree slot of one host cache (as on one machine); an item
is one commit of a new file, or, for `--conflicts` of the items, an edit of the same line of one
shared file (resolved by keeping both sides, as a worker's agent would). Prints per mode and N:
landings per second and per hour, retries, reworks, p50/p99 land latency, lost and duplicated; then
the mean wall time per item of each step of a worker (its own steps timed here, the landing's steps
as `DirectLanding`/`QueueLanding` timed them). `--lander-only` prints the lander's own counts of pushes and
redos (CAS pushes refused, batch landed again).

    python bench/integration_bench.py --workers 1 8 32 64 --conflicts 0 0.1
    python bench/integration_bench.py --hosted --seconds 60     # queue mode, 6 pushes a minute
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.git.repo import commit_all, continue_rebase, stage_all  # noqa: E402
from orchestrator.git.workspace import prepare_cache, worktree_slot  # noqa: E402
from orchestrator.landing.direct import DirectLanding  # noqa: E402
from orchestrator.landing.outcomes import timed  # noqa: E402
from orchestrator.landing.queue import QueueLanding  # noqa: E402
from orchestrator.local.processes import RedisServer  # noqa: E402
from orchestrator.state.keys import Keys  # noqa: E402
from orchestrator.state.records import connect  # noqa: E402
from orchestrator.state.store import Store  # noqa: E402


def git(*args: str, cwd: Path | None = None) -> str:
    identity = ["-c", "user.name=Bench", "-c", "user.email=bench@localhost"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_remote(root: Path) -> Path:
    remote, seed = root / "remote.git", root / "seed"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    git("init", "-q", "-b", "main", str(seed))
    (seed / "shared.txt").write_text("line one\n" + "".join(f"line {i}\n" for i in range(2, 50)))
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "initial", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    return remote


def keep_both(worktree: Path):
    def resolve(paths: list[str]) -> bool:
        for path in paths:
            lines = (worktree / path).read_text().splitlines(keepends=True)
            (worktree / path).write_text("".join(l for l in lines if not l.startswith(("<<<<<<<", "=======", ">>>>>>>"))))
        stage_all(worktree)
        return not continue_rebase(worktree, "Bench", "bench@localhost")
    return resolve


@contextmanager
def bench_repository(redis_url: str, prefix: str) -> Iterator[tuple[Path, object, Store]]:
    """A fresh remote with its host cache, and the store on a flushed Redis, for one trial."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        remote = make_remote(root)
        cache = prepare_cache(root / "data", str(remote))
        store = Store(connect(redis_url))
        store.redis.flushdb()
        yield remote, cache, store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def trial(mode: str, workers: int, items: int, conflicts: float, redis_url: str, push_interval: float = 0.0,
          seconds: float | None = None) -> dict:
    with bench_repository(redis_url, "cadre-land-bench-") as (remote, cache, store):
        stats = {"latency": [], "retries": 0, "reworks": 0, "landed": 0, "rescued": 0, "steps": {}}
        lock = threading.Lock()
        every = max(1, round(1 / conflicts)) if conflicts else 0
        deadline = time.monotonic() + seconds if seconds else None

        def work(k: int) -> None:
            j = 0
            while (j < items) if deadline is None else (time.monotonic() < deadline):
                item = f"item-{k}-{j}"
                store.redis.set(Keys.lease(item), 1, ex=3600)
                steps: dict[str, float] = {}
                with timed(steps, "fetch before slot"):
                    cache.fetch()  # as a worker does before taking its slot (prepare_cache)
                entered = time.perf_counter()
                with worktree_slot(cache, f"w{k}", "refs/remotes/origin/main") as worktree:
                    steps["slot (add or reset)"] = time.perf_counter() - entered
                    serial = k * items + j
                    if every and serial % every == 0:
                        text = (worktree / "shared.txt").read_text().replace("line one", f"line one by {item}", 1)
                        (worktree / "shared.txt").write_text(text)
                    else:
                        (worktree / f"{item}.txt").write_text(f"{item}\n")
                    with timed(steps, "commit"):
                        commit_all(worktree, f"{item}\n\nCadre-Item: {item}\nCadre-Attempt: 1", "Bench",
                                   "bench@localhost")
                    started = time.monotonic()
                    if mode == "direct":
                        result = DirectLanding(200).land(worktree, cache, "main", item, 1, lambda: True, keep_both(worktree))
                    else:
                        result = QueueLanding(store, push_interval).land(worktree, cache, "main", item, 1, lambda: True,
                                                                         keep_both(worktree))
                    with lock:
                        stats["latency"].append(time.monotonic() - started)
                        stats["landed" if result.landed else "rescued"] += 1
                        stats["retries" if mode == "direct" else "reworks"] += result.retries
                        if mode == "direct" and result.conflicted_paths:
                            stats["reworks"] += 1
                        for step, spent in {**steps, **result.steps}.items():
                            stats["steps"][step] = stats["steps"].get(step, 0.0) + spent
                j += 1

        began = time.monotonic()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        trailers = git("log", "--format=%(trailers:key=Cadre-Item,valueonly)", "main", cwd=remote).split()
        submitted = stats["landed"] + stats["rescued"]
        if mode == "queue":  # as every lander of the branch counted them
            counts = store.redis.hgetall(Keys.lander_counts(Keys.landing_branch(cache.public_url, 'main')))
            pushes, refused = int(counts.get("pushes", 0)), int(counts.get("redos", 0))
        else:  # each landing is one push that moved the branch; each retry followed a refused push
            pushes, refused = stats["landed"], stats["retries"]
        return {"mode": mode, "workers": workers, "conflicts": conflicts, "items": submitted,
                "per_s": stats["landed"] / elapsed, "pushes": pushes, "refused": refused, "reworks": stats["reworks"],
                "p50": percentile(stats["latency"], 0.5), "p99": percentile(stats["latency"], 0.99),
                "lost": submitted - len(set(trailers)) - stats["rescued"], "duplicated": len(trailers) - len(set(trailers)),
                "rescued": stats["rescued"], "seconds": elapsed,
                "steps_ms": {step: 1000 * spent / max(1, submitted) for step, spent in stats["steps"].items()}}


def lander_only(count: int, redis_url: str, other_host: bool) -> dict:
    """The lander alone: `count` disjoint commits queued up front, then one drain, timed. The commits are
    made in the lander's own cache (workers on its host: requests name no ref), or, with `other_host`, in
    another cache and pushed to their pending refs (workers elsewhere: the lander fetches them)."""
    import json

    from orchestrator.landing.lander import Lander, LandingRequest, pending_ref

    with bench_repository(redis_url, "cadre-lander-bench-") as (remote, cache, store):
        key = Keys.landing_branch(cache.public_url, "main")
        source = prepare_cache(cache.root.parent / "other-host", str(remote)) if other_host else cache
        with worktree_slot(source, "prepare", "refs/remotes/origin/main") as worktree:
            base = git("rev-parse", "HEAD", cwd=worktree).strip()
            requests = []
            for k in range(count):
                git("checkout", "-q", "--detach", base, cwd=worktree)
                (worktree / f"item-{k}.txt").write_text(f"{k}\n")
                sha = commit_all(worktree, f"item-{k}\n\nCadre-Item: item-{k}", "Bench", "bench@localhost")
                store.redis.set(Keys.lease(f"item-{k}"), 1, ex=3600)
                requests.append(LandingRequest(f"item-{k}", 1, sha, pending_ref(f"item-{k}", 1) if other_host else ""))
            if other_host:
                git("push", "-q", str(remote), *(f"{r.commit}:{r.ref}" for r in requests), cwd=worktree)
            store.redis.rpush(Keys.landing_queue(key), *(json.dumps(r.__dict__) for r in requests))
        lander = Lander(store, cache, "main")
        began = time.monotonic()
        answered = lander.drain_if_free()
        elapsed = time.monotonic() - began
        landed = len(git("log", "--format=%(trailers:key=Cadre-Item,valueonly)", "main", cwd=remote).split())
        return {"count": count, "answered": answered, "landed": landed, "seconds": elapsed, "per_s": landed / elapsed,
                "pushes": lander.pushes, "redos": lander.redos}


def print_breakdown(rows: list[dict]) -> None:
    """Mean wall time per item of each step a worker went through (ms), one row per trial."""
    steps = list(dict.fromkeys(step for r in rows for step in r["steps_ms"]))
    print("\nPer item, mean wall time of each step of a worker (ms; the lander's work is done by whichever worker "
          "holds its lock, counted in that worker's \"landing (as the lander)\"):\n")
    print("| mode | workers | conflicts | " + " | ".join(steps) + " | sum |")
    print("|---|---|---|" + "---|" * (len(steps) + 1))
    for r in rows:
        cells = [f"{r['steps_ms'][step]:.1f}" if step in r["steps_ms"] else "-" for step in steps]
        print(f"| {r['mode']} | {r['workers']} | {r['conflicts']:.0%} | " + " | ".join(cells)
              + f" | {sum(r['steps_ms'].values()):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--conflicts", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--landings", type=int, default=64, help="landings per trial (spread over the workers)")
    parser.add_argument("--modes", nargs="+", default=["direct", "queue"])
    parser.add_argument("--hosted", action="store_true", help="queue mode at 6 pushes a minute, 32 workers")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--lander-only", type=int, default=0, help="time one lander draining this many queued items")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadre-bench-redis-") as tmp:
        redis_server = RedisServer(Path(tmp)).start()
        try:
            if args.lander_only:
                for other_host, source in ((False, "commits in its own cache"), (True, "commits fetched from pending refs")):
                    r = lander_only(args.lander_only, redis_server.url, other_host)
                    print(f"lander alone, {source}: {r['landed']}/{r['count']} landed ({r['answered']} answered) in "
                          f"{r['seconds']:.2f} s = {r['per_s']:.0f} items/s, {r['pushes']} pushes, {r['redos']} redos",
                          flush=True)
                return
            print("| mode | workers | conflicts | items | landings/s | landings/h | pushes | refused pushes (direct: "
                  "retries, queue: lander redos) | reworks | p50 s | p99 s | rescued | lost | duplicated |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            if args.hosted:
                rows = [trial("queue", 32, 0, 0.0, redis_server.url, push_interval=10.0, seconds=args.seconds)]
            else:
                rows = (trial(mode, n, max(1, args.landings // n), c, redis_server.url)
                        for c in args.conflicts for n in args.workers for mode in args.modes)
            done = []
            for r in rows:
                print(f"| {r['mode']} | {r['workers']} | {r['conflicts']:.0%} | {r['items']} | {r['per_s']:.1f} | "
                      f"{r['per_s'] * 3600:,.0f} | {r['pushes']} | {r['refused']} | {r['reworks']} | {r['p50']:.2f} | {r['p99']:.2f} | "
                      f"{r['rescued']} | {r['lost']} | {r['duplicated']} |", flush=True)
                done.append(r)
            print_breakdown(done)
        finally:
            redis_server.stop()


if __name__ == "__main__":
    main()
