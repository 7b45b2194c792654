"""Workspace: time to a ready worktree for generated repositories of 1k, 10k and 50k files: a first slot
(a new host cache: fetch, then a worktree), a warm slot (fetch + reset + clean of a reused worktree) and,
as the baseline most systems use per item, a full clone. The first slot and the clone run in turns, so
both meet the same moments of a disk whose speed drifts. Prints figures.

    python bench/workspace_bench.py --files 1000 10000 50000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.git.workspace import prepare_cache, worktree_slot  # noqa: E402


def generated_remote(root: Path, files: int) -> Path:
    """A bare repository with `files` small files in 100 directories, made with git fast-import."""
    remote = root / f"remote-{files}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    lines = ["commit refs/heads/main", "committer Bench <bench@localhost> 1700000000 +0000", "data 4", "gen"]
    for k in range(files):
        content = f"file {k}\n"
        lines += [f"M 100644 inline src/d{k % 100}/f{k}.txt", f"data {len(content)}", content.rstrip("\n")]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=remote, input="\n".join(lines) + "\n", text=True, check=True)
    return remote


def timed_once(action) -> float:
    """Wall time of one call; the disk's pending writes are flushed first, so no run pays for the
    writeback of the one before it."""
    os.sync()
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def median_time(action, runs: int) -> float:
    """Median wall time of `runs` calls."""
    return statistics.median(timed_once(action) for _ in range(runs))


def paired_medians(first, second, runs: int) -> tuple[float, float]:
    """Median wall times of two actions run in turns (first-second, then second-first, ...), so that both
    meet the same moments of a disk whose speed drifts."""
    times: tuple[list[float], list[float]] = ([], [])
    for k in range(runs):
        for which in ((0, 1) if k % 2 == 0 else (1, 0)):
            times[which].append(timed_once((first, second)[which]))
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| files | first slot: new cache, fetch, worktree (median) | warm slot: fetch + reset + clean (median) "
          "| full clone (median) |")
    print("|---|---|---|---|")
    for files in args.files:
        with tempfile.TemporaryDirectory(prefix="cadre-ws-bench-") as tmp:
            root = Path(tmp)
            remote = generated_remote(root, files)
            counter = iter(range(1000))

            def first_slot() -> None:
                cache = prepare_cache(root / f"data-{next(counter)}", str(remote))
                with worktree_slot(cache, "bench", "refs/remotes/origin/main") as slot:
                    (slot / "scratch.txt").write_text("left by the previous task\n")

            def clone() -> None:
                subprocess.run(["git", "clone", "-q", "--no-local", str(remote), str(root / f"clone-{next(counter)}")],
                               check=True)

            cache = prepare_cache(root / "data-warm", str(remote))

            def warm() -> None:
                cache.fetch()
                with worktree_slot(cache, "bench", "refs/remotes/origin/main") as reused:
                    (reused / "scratch.txt").write_text("left by the previous task\n")

            warm()  # the warm slot's first use is a first slot: not counted
            first, cloned = paired_medians(first_slot, clone, args.runs)
            print(f"| {files:,} | {first * 1000:.0f} ms | {median_time(warm, args.runs) * 1000:.0f} ms | "
                  f"{cloned * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
