"""orchestrator.git.workspace against real git: slots carved out of a cache of a temporary remote."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.git import repo as git_repo
from orchestrator.git.cache import BareCache
from orchestrator.git.runner import GitError
from orchestrator.git.workspace import prepare_cache, slot_path, worktree_slot

NAME, EMAIL = "Test Agent", "agent@example.test"
IDENTITY = {"GIT_AUTHOR_NAME": NAME, "GIT_AUTHOR_EMAIL": EMAIL, "GIT_COMMITTER_NAME": NAME,
            "GIT_COMMITTER_EMAIL": EMAIL}
START = "refs/remotes/origin/main"


def run_git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git with a per-command identity."""
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **IDENTITY}, check=check,
                          capture_output=True, text=True)


def make_remote(tmp_path: Path, files: dict[str, str]) -> str:
    """A bare repository whose branch main holds `files` plus a `.gitignore` of `*.log`.

    The commit is streamed through `git fast-import`, so no seed checkout is written to disk.
    """
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    stream = [f"commit refs/heads/main\ncommitter {NAME} <{EMAIL}> 1700000000 +0000\ndata 7\ninitial\n"]
    for name, text in {".gitignore": "*.log\n", **files}.items():
        data = text.encode()
        stream.append(f"M 100644 inline {name}\ndata {len(data)}\n{text}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input="".join(stream), text=True, check=True)
    return str(bare)


@pytest.fixture()
def cache(tmp_path: Path) -> BareCache:
    """A prepared (ensured + fetched) cache of a small remote."""
    return prepare_cache(tmp_path / "data", make_remote(tmp_path, {"app.txt": "one\ntwo\n", "src/a.py": "x = 1\n"}))


def assert_clean_at(slot: Path, sha: str) -> None:
    """The slot is a detached worktree at `sha` with no changes at all (ignored files included)."""
    assert git_repo.head_sha(slot) == sha
    assert run_git(slot, "symbolic-ref", "--quiet", "HEAD", check=False).returncode == 1  # detached
    assert git_repo.changed_paths(slot) == []
    assert run_git(slot, "status", "--porcelain", "--ignored").stdout == ""


def test_prepare_cache_fetches_the_branch(cache: BareCache) -> None:
    assert cache.head("main") == run_git(Path(cache.url), "rev-parse", "main").stdout.strip()


def test_a_new_cache_is_a_bare_repository_git_reads_with_one_origin(cache: BareCache) -> None:
    """The cache is created in-process (libgit2); git sees a bare repository with origin set once, also
    after the cache is ensured again."""
    BareCache(cache.root, cache.url).ensure()
    assert run_git(cache.path, "rev-parse", "--is-bare-repository").stdout.strip() == "true"
    assert run_git(cache.path, "config", "--get-all", "remote.origin.url").stdout.split() == [cache.public_url]
    assert run_git(cache.path, "config", "--get-all", "remote.origin.fetch").stdout.split() == [
        "+refs/heads/*:refs/remotes/origin/*"]


def test_slot_is_clean_detached_worktree_at_branch_head(cache: BareCache) -> None:
    with worktree_slot(cache, "worker", START) as slot:
        assert slot == cache.root / "slots" / cache.name / "worker-0"
        assert cache.owns_worktree(slot)
        assert_clean_at(slot, cache.head("main"))
        assert (slot / "src" / "a.py").read_text() == "x = 1\n"


def test_reused_slot_discards_leftovers(cache: BareCache) -> None:
    with worktree_slot(cache, "worker", START) as slot:
        (slot / "app.txt").write_text("changed\n")
        (slot / "new.txt").write_text("untracked\n")
        (slot / "build").mkdir()
        (slot / "build" / "out.log").write_text("ignored\n")
        git_repo.commit_all(slot, "local commit", NAME, EMAIL)
        (slot / "nested").mkdir()  # a repository an agent made inside the slot goes too
        run_git(slot / "nested", "init", "--quiet")
        (slot / "nested" / "n.txt").write_text("nested\n")
        (slot / "empty-dir").mkdir()
        (slot / "src" / "a.py").write_text("x = 2\n")
        run_git(slot, "checkout", "--quiet", "-b", "agent-branch")
        first = slot
    with worktree_slot(cache, "worker", START) as slot:
        assert slot == first
        assert_clean_at(slot, cache.head("main"))
        assert (slot / "app.txt").read_text() == "one\ntwo\n" and not (slot / "build").exists()
        assert not (slot / "nested").exists() and not (slot / "empty-dir").exists()


def test_two_slots_held_at_once_are_different(cache: BareCache) -> None:
    with worktree_slot(cache, "worker", START) as one, worktree_slot(cache, "worker", START) as two:
        assert one != two and one.name == "worker-0" and two.name == "worker-1"
        (one / "only-here.txt").write_text("1\n")
        assert not (two / "only-here.txt").exists()
    with worktree_slot(cache, "judge", START) as other:
        assert other.name == "judge-0"


def test_slot_lock_is_released_on_exception(cache: BareCache) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with worktree_slot(cache, "worker", START):
            raise RuntimeError("boom")
    with worktree_slot(cache, "worker", START) as slot:
        assert slot.name == "worker-0"


def test_unknown_start_point_raises_and_keeps_the_slot(cache: BareCache) -> None:
    with worktree_slot(cache, "worker", START) as slot:
        (slot / "app.txt").write_text("left over\n")
    with pytest.raises(GitError, match=r"^unknown revision refs/remotes/origin/nope: "):
        with worktree_slot(cache, "worker", "refs/remotes/origin/nope"):
            pass
    with worktree_slot(cache, "worker", START) as again:
        assert again == slot
        assert_clean_at(again, cache.head("main"))


def test_stale_slot_directory_is_rebuilt(cache: BareCache) -> None:
    stale = slot_path(cache, "worker", 0)
    stale.mkdir(parents=True)
    (stale / "junk.txt").write_text("left by a crash\n")
    with worktree_slot(cache, "worker", START) as slot:
        assert slot == stale and not (slot / "junk.txt").exists()
        assert_clean_at(slot, cache.head("main"))


def test_slot_with_rebase_in_progress_is_reset(cache: BareCache) -> None:
    with worktree_slot(cache, "worker", START) as slot:
        base = git_repo.head_sha(slot)
        (slot / "app.txt").write_text("mine\ntwo\n")
        mine = git_repo.commit_all(slot, "mine", NAME, EMAIL)
        run_git(slot, "checkout", "--quiet", "--detach", base)
        (slot / "app.txt").write_text("theirs\ntwo\n")
        theirs = git_repo.commit_all(slot, "theirs", NAME, EMAIL)
        assert mine and theirs
        run_git(slot, "checkout", "--quiet", "--detach", mine)
        assert git_repo.rebase_onto(slot, theirs) == ["app.txt"]
        (slot / "untracked.txt").write_text("x\n")
    with worktree_slot(cache, "worker", START) as slot:
        assert not git_repo.rebase_in_progress(slot)
        assert_clean_at(slot, cache.head("main"))


def test_a_large_reused_slot_is_reset_exactly(tmp_path: Path) -> None:
    files = {f"pkg{n // 100}/mod{n}.py": f"VALUE = {n}\n" for n in range(5000)}
    cache = prepare_cache(tmp_path / "data", make_remote(tmp_path, files))
    with worktree_slot(cache, "worker", START) as slot:
        (slot / "pkg3" / "mod300.py").write_text("edited\n")
        (slot / "scratch.txt").write_text("scratch\n")
    with worktree_slot(cache, "worker", START) as slot:  # how fast: bench/workspace_bench.py
        assert_clean_at(slot, cache.head("main"))
        assert (slot / "pkg3" / "mod300.py").read_text() == "VALUE = 300\n"


def push_new_commit(tmp_path: Path, remote: str, name: str) -> str:
    """Commit `name` on top of the remote's main from a scratch clone, push it; its sha."""
    clone = tmp_path / f"pusher-{name}"
    if not clone.exists():
        run_git(tmp_path, "clone", "--quiet", remote, str(clone))
    run_git(clone, "pull", "--quiet", "--ff-only")
    (clone / name).write_text(f"{name}\n")
    run_git(clone, "add", "-A")
    run_git(clone, "commit", "--quiet", "-m", name)
    run_git(clone, "push", "--quiet", "origin", "HEAD:main")
    return run_git(clone, "rev-parse", "HEAD").stdout.strip()


def test_every_fetch_sees_what_was_pushed_before_it_began(cache: BareCache, tmp_path: Path) -> None:
    for k in range(5):
        pushed = push_new_commit(tmp_path, cache.url, f"f{k}.txt")
        cache.fetch()
        assert cache.head("main") == pushed, "a fetch must never be skipped for one that began before it"


def test_fetches_queued_behind_one_share_the_next(cache: BareCache, tmp_path: Path, monkeypatch) -> None:
    """Eight threads ask while the cache is locked: one real fetch serves them all, and it sees the push
    made before the lock was released."""
    import threading

    import orchestrator.git.cache as cache_module

    fetches = []
    real_run_git = cache_module.run_git

    def counting_run_git(path, command, *args, **kw):
        fetches.extend([command] if command == "fetch" else [])
        return real_run_git(path, command, *args, **kw)

    monkeypatch.setattr(cache_module, "run_git", counting_run_git)  # counts; the real git runs
    with cache.lock():
        threads = [threading.Thread(target=cache.fetch) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # all eight are waiting for the lock
        pushed = push_new_commit(tmp_path, cache.url, "late.txt")
    for thread in threads:
        thread.join(timeout=60)
    assert cache.head("main") == pushed
    assert len(fetches) == 1, f"{len(fetches)} fetches for eight callers queued behind one lock"
