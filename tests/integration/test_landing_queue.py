"""The landing queue on real Redis and real git: concurrency, conflicts, outside pushes, lander crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from orchestrator.git.repo import commit_all
from orchestrator.git.workspace import prepare_cache, worktree_slot
from orchestrator.landing.lander import Lander, LandingRequest, pending_ref
from orchestrator.landing.queue import submit
from orchestrator.state.keys import Keys
from tests.services import git, make_remote

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def commit_in_slot(cache, item_id: str, path: str, content: str):
    """A worktree slot with one commit for `item_id` (the slot lock is released at once: fine for tests)."""
    with worktree_slot(cache, f"t-{item_id}", "refs/remotes/origin/main") as worktree:
        (worktree / path).write_text(content)
        sha = commit_all(worktree, f"{item_id}\n\nCadre-Item: {item_id}\nCadre-Attempt: 1", "Ann Author", "ann@example.com")
    return worktree, sha


def trailers_on_main(remote) -> list[str]:
    return [line for line in git("log", "--format=%(trailers:key=Cadre-Item,valueonly)", "main", cwd=remote).split()]


@pytest.fixture
def setup(tmp_path, store):
    remote = make_remote(tmp_path / "git", {"shared.txt": "base\n"})
    cache = prepare_cache(tmp_path / "data", str(remote))
    return remote, cache, store


def hold_lease(store, item_id: str, attempt: int = 1) -> None:
    store.redis.set(Keys.lease(item_id), attempt, ex=600)


def test_concurrent_disjoint_commits_all_land_once_in_a_linear_history(setup):
    remote, cache, store = setup
    prepared = []
    for k in range(8):
        hold_lease(store, f"item-{k}")
        prepared.append((f"item-{k}", *commit_in_slot(cache, f"item-{k}", f"file{k}.txt", f"{k}\n")))
    answers = {}

    def land(item_id, worktree, sha):
        answers[item_id] = submit(store, cache, worktree, "main", item_id, 1, sha, push_interval=0)

    threads = [threading.Thread(target=land, args=p) for p in prepared]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a.status == "landed" for a in answers.values()), answers
    assert sorted(trailers_on_main(remote)) == sorted(answers)
    assert git("log", "--merges", "--format=%H", "main", cwd=remote) == ""
    landed = answers["item-3"].commit
    assert git("log", "-1", "--format=%an <%ae>|%s", landed, cwd=remote) == "Ann Author <ann@example.com>|item-3"


def test_conflicting_item_is_answered_once_with_its_paths(setup):
    remote, cache, store = setup
    for item_id in ("item-a", "item-b"):
        hold_lease(store, item_id)
    worktree_a, sha_a = commit_in_slot(cache, "item-a", "shared.txt", "from a\n")
    worktree_b, sha_b = commit_in_slot(cache, "item-b", "shared.txt", "from b\n")
    assert submit(store, cache, worktree_a, "main", "item-a", 1, sha_a, 0).status == "landed"
    answer = submit(store, cache, worktree_b, "main", "item-b", 1, sha_b, 0)
    assert answer.status == "conflict" and answer.conflicted_paths == ["shared.txt"]
    assert trailers_on_main(remote) == ["item-a"]


def test_stale_attempt_is_refused(setup):
    remote, cache, store = setup
    hold_lease(store, "item-z", attempt=2)
    worktree, sha = commit_in_slot(cache, "item-z", "z.txt", "z\n")
    assert submit(store, cache, worktree, "main", "item-z", 1, sha, 0).status == "stale"
    assert trailers_on_main(remote) == []


def test_outside_push_is_refetched_and_the_batch_redone(setup, tmp_path):
    remote, cache, store = setup
    hold_lease(store, "item-o")
    worktree, sha = commit_in_slot(cache, "item-o", "o.txt", "o\n")
    other = tmp_path / "other"
    git("clone", str(remote), str(other))
    store.redis.set(Keys.lander_last_push(Keys.landing_branch(cache.public_url, 'main')), time.time())  # the lander waits 2 s to push
    result = {}
    thread = threading.Thread(target=lambda: result.update(a=submit(store, cache, worktree, "main", "item-o", 1, sha, 2.0)))
    thread.start()
    time.sleep(0.8)
    (other / "outside.txt").write_text("pushed by a human\n")
    git("add", "-A", cwd=other)
    git("commit", "-m", "outside", cwd=other)
    git("push", "origin", "HEAD:main", cwd=other)
    thread.join()
    assert result["a"].status == "landed"
    assert git("log", "--format=%s", "main", cwd=remote).splitlines()[:2] == ["item-o", "outside"]


LANDER_SCRIPT = """
import sys
from pathlib import Path
from orchestrator.state.records import connect
from orchestrator.state.store import Store
from orchestrator.git.cache import BareCache
from orchestrator.landing.lander import Lander
store = Store(connect(sys.argv[1]))
Lander(store, BareCache(Path(sys.argv[2]), sys.argv[3]), "main", push_interval=float(sys.argv[4]),
       lock_seconds=float(sys.argv[5]) if len(sys.argv) > 5 else 60).drain_if_free()
"""


def enqueue(store, cache, worktree, sha, item_id=None):
    item_id = item_id or git("log", "-1", "--format=%(trailers:key=Cadre-Item,valueonly)", sha, cwd=worktree).strip()
    ref = pending_ref(item_id, 1)
    git("push", "-f", cache.url, f"{sha}:{ref}", cwd=worktree)
    store.redis.rpush(Keys.landing_queue(Keys.landing_branch(cache.public_url, 'main')), json.dumps(LandingRequest(item_id, 1, sha, ref).__dict__))


def test_lander_killed_mid_batch_loses_nothing_and_lands_nothing_twice(setup, redis_url):
    remote, cache, store = setup
    key = Keys.landing_branch(cache.public_url, "main")
    items = [f"item-k{k}" for k in range(5)]
    for k, item_id in enumerate(items):
        hold_lease(store, item_id)
        worktree, sha = commit_in_slot(cache, item_id, f"k{k}.txt", f"{k}\n")
        enqueue(store, cache, worktree, sha, item_id)
    store.redis.set(Keys.lander_last_push(key), time.time())  # the lander will wait before its push: kill it then
    lander = subprocess.Popen([sys.executable, "-c", LANDER_SCRIPT, redis_url, str(cache.root), cache.url, "30"],
                              env={**os.environ, "PYTHONPATH": ROOT}, start_new_session=True)
    deadline = time.monotonic() + 60
    while store.redis.llen(Keys.landing_processing(key)) < len(items) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    os.killpg(lander.pid, signal.SIGKILL)
    lander.wait()
    assert trailers_on_main(remote) == [] and store.redis.llen(Keys.landing_processing(key)) == len(items)
    # Simulate the other crash point too: the first item had reached the branch before the kill.
    with worktree_slot(cache, "t-manual", "refs/remotes/origin/main") as worktree:
        (worktree / "k0.txt").write_text("0\n")
        commit_all(worktree, "item-k0\n\nCadre-Item: item-k0", "Ann Author", "ann@example.com")
        git("push", cache.url, "HEAD:refs/heads/main", cwd=worktree)
    store.redis.delete(Keys.lander_lock(key))  # the dead lander's lock expires
    store.redis.delete(Keys.lander_last_push(key))
    assert Lander(store, cache, "main").drain_if_free() == len(items)
    assert sorted(trailers_on_main(remote)) == sorted(items), "each item exactly once"
    for item_id in items:
        answer = json.loads(store.redis.lpop(Keys.landing_answer(item_id, 1)))
        assert answer["status"] == "landed"


def start_lander(redis_url, cache, push_interval: float, lock_seconds: float = 60) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LANDER_SCRIPT, redis_url, str(cache.root), cache.url,
                             str(push_interval), str(lock_seconds)], env={**os.environ, "PYTHONPATH": ROOT},
                            start_new_session=True)


def wait_in_flight(store, key: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while store.redis.llen(Keys.landing_processing(key)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.redis.llen(Keys.landing_processing(key)) == count


def test_a_lander_stalled_past_its_lock_never_undoes_its_successors(setup, redis_url):
    """Lander A is frozen (SIGSTOP) in the middle of a batch past its lock's TTL; B takes over and lands
    A's requests; C takes a new request and dies with it; then A wakes up. A must not answer, push or
    delete anything any more: the next lander finds C's request and everything lands exactly once."""
    remote, cache, store = setup
    key = Keys.landing_branch(cache.public_url, "main")
    first = [f"item-s{k}" for k in range(3)]
    for k, item_id in enumerate(first):
        hold_lease(store, item_id)
        enqueue(store, cache, *commit_in_slot(cache, item_id, f"s{k}.txt", f"{k}\n"))
    # A waits about 8 s before its push: freeze it then, once its fetches (which hold the host's cache
    # lock, that B needs) are surely over.
    store.redis.set(Keys.lander_last_push(key), time.time() + 5)
    lander_a = start_lander(redis_url, cache, push_interval=3, lock_seconds=2)
    wait_in_flight(store, key, 3)
    time.sleep(1.5)
    os.killpg(lander_a.pid, signal.SIGSTOP)
    time.sleep(2.5)  # A's lock lapses while it is frozen
    store.redis.delete(Keys.lander_last_push(key))
    assert Lander(store, cache, "main", lock_seconds=2).drain_if_free() == 3
    assert sorted(trailers_on_main(remote)) == sorted(first)
    hold_lease(store, "item-late")
    enqueue(store, cache, *commit_in_slot(cache, "item-late", "late.txt", "late\n"))
    store.redis.set(Keys.lander_last_push(key), time.time())
    lander_c = start_lander(redis_url, cache, push_interval=30, lock_seconds=2)
    wait_in_flight(store, key, 1)
    os.killpg(lander_c.pid, signal.SIGKILL)  # C dies with item-late in flight
    lander_c.wait()
    os.killpg(lander_a.pid, signal.SIGCONT)
    assert lander_a.wait(timeout=60) == 0
    time.sleep(2.5)  # C's lock lapses
    store.redis.delete(Keys.lander_last_push(key))
    Lander(store, cache, "main", lock_seconds=2).drain_if_free()
    assert sorted(trailers_on_main(remote)) == sorted([*first, "item-late"]), "each item exactly once"
    for item_id in [*first, "item-late"]:
        answers = [json.loads(a)["status"] for a in store.redis.lrange(Keys.landing_answer(item_id, 1), 0, -1)]
        assert answers and set(answers) == {"landed"}, (item_id, answers)
    assert git("for-each-ref", "refs/cadre/pending", cwd=remote) == "", "answered requests' refs are deleted"


def test_the_sweeper_deletes_pending_refs_nobody_waits_for(setup):
    remote, cache, store = setup
    from orchestrator.landing.lander import sweep_pending_refs
    from orchestrator.state.models import Handoff, HandoffStatus, ItemStatus, WorkItem

    running = WorkItem(id="item-run", run_id="r", cycle=1, node_id="n", title="t", instructions="i",
                       status=ItemStatus.RUNNING, attempt=2)
    settled = running.model_copy(update={"id": "item-done", "status": ItemStatus.DONE,
                                         "handoff": Handoff(status=HandoffStatus.LANDED)})
    for item in (running, settled):
        store.redis.set(Keys.item(item.id), item.model_dump_json())
    refs = {}
    for item_id, attempt in (("item-run", 2), ("item-run", 1), ("item-done", 2), ("item-gone", 1)):
        worktree, sha = commit_in_slot(cache, f"{item_id}-{attempt}", f"{item_id}.txt", f"{attempt}\n")
        refs[pending_ref(item_id, attempt)] = sha
        git("push", "-f", cache.url, f"{sha}:{pending_ref(item_id, attempt)}", cwd=worktree)
    assert sweep_pending_refs(store, cache) == sorted(set(refs) - {pending_ref("item-run", 2)})
    assert git("for-each-ref", "--format=%(refname)", "refs/cadre/pending", cwd=remote) == pending_ref("item-run", 2)


def test_workers_land_through_the_queue_on_the_real_stack(cadre, remote):
    from orchestrator.testing.scripted_model import ScriptedModelServer
    from tests.integration.policies import single_item_plan
    from tests.integration.test_cycle import remote_log, run_and_wait, start_stack

    titles = ("write q1.txt: one", "write q2.txt: two", "append shared.txt: three", "append shared.txt: four")
    from tests.integration.policies import keep_both_sides_on_conflict

    with ScriptedModelServer(keep_both_sides_on_conflict(single_item_plan(*titles))) as server:
        stack = start_stack(cadre, server, workers=3, CADRE_INTEGRATION="queue")
        result, run_id, status = run_and_wait(stack, remote, "Land through the queue.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()}"
    landed = [t for t in status["items"] if t["commit"]]
    assert len(landed) == 4 and len(remote_log(remote)) == 5
    text = git("show", "main:shared.txt", cwd=remote)
    assert "three" in text and "four" in text
