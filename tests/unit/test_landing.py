"""Landing a commit with a real bare remote: rejected pushes are rebased and retried."""

from __future__ import annotations

from orchestrator.git.repo import commit_all
from orchestrator.git.workspace import prepare_cache, worktree_slot
from orchestrator.landing.direct import DirectLanding
from orchestrator.landing.rescue import rescue_branch_name
from tests.services import git, make_remote


def test_push_rejected_by_a_concurrent_landing_is_rebased_and_retried(tmp_path):
    remote = make_remote(tmp_path / "git", {"a.txt": "a\n"})
    other = tmp_path / "other"
    git("clone", str(remote), str(other))
    cache = prepare_cache(tmp_path / "data", str(remote))
    competing_pushes = []

    def competitor_lands_first() -> bool:
        # Called just before each push: the first time, someone else lands on the branch.
        if not competing_pushes:
            (other / "b.txt").write_text("b\n")
            git("add", "-A", cwd=other)
            git("commit", "-m", "competitor", cwd=other)
            git("push", "origin", "HEAD:main", cwd=other)
            competing_pushes.append(git("rev-parse", "HEAD", cwd=other))
        return True

    with worktree_slot(cache, "worker", "refs/remotes/origin/main") as worktree:
        (worktree / "c.txt").write_text("c\n")
        commit_all(worktree, "mine\n\nCadre-Item: item-1", "Agent", "agent@example.com")
        result = DirectLanding(5).land(worktree, cache, "main", "item-1", 1, competitor_lands_first)
    assert result.landed and result.retries == 1
    assert git("rev-parse", "main", cwd=remote) == result.commit
    assert git("rev-parse", f"{result.commit}~1", cwd=remote) == competing_pushes[0]


def test_conflicting_commit_goes_to_a_rescue_branch(tmp_path):
    remote = make_remote(tmp_path / "git", {"a.txt": "a\n"})
    other = tmp_path / "other"
    git("clone", str(remote), str(other))
    cache = prepare_cache(tmp_path / "data", str(remote))
    with worktree_slot(cache, "worker", "refs/remotes/origin/main") as worktree:
        (worktree / "a.txt").write_text("mine\n")
        mine = commit_all(worktree, "mine", "Agent", "agent@example.com")
        (other / "a.txt").write_text("theirs\n")
        git("commit", "-am", "theirs", cwd=other)
        git("push", "origin", "HEAD:main", cwd=other)
        result = DirectLanding(5).land(worktree, cache, "main", "item-2", 1, lambda: True)
    assert not result.landed and result.conflicted_paths == ["a.txt"]
    assert result.rescue_branch == rescue_branch_name("item-2", 1)
    assert git("rev-parse", f"refs/heads/{result.rescue_branch}", cwd=remote) == mine


def test_stale_attempt_never_pushes_to_the_branch(tmp_path):
    remote = make_remote(tmp_path / "git", {"a.txt": "a\n"})
    cache = prepare_cache(tmp_path / "data", str(remote))
    before = git("rev-parse", "main", cwd=remote)
    with worktree_slot(cache, "worker", "refs/remotes/origin/main") as worktree:
        (worktree / "z.txt").write_text("z\n")
        commit_all(worktree, "zombie", "Agent", "agent@example.com")
        result = DirectLanding(5).land(worktree, cache, "main", "item-3", 2, lambda: False)
    assert not result.landed and git("rev-parse", "main", cwd=remote) == before
    assert git("rev-parse", f"refs/heads/{result.rescue_branch}", cwd=remote) == result.commit


def test_reused_slot_salvages_commits_a_killed_worker_left(tmp_path):
    remote = make_remote(tmp_path / "git", {"a.txt": "a\n"})
    cache = prepare_cache(tmp_path / "data", str(remote))
    with worktree_slot(cache, "worker", "refs/remotes/origin/main", owner=("item-9", 2)) as worktree:
        (worktree / "k.txt").write_text("committed, then the worker died\n")
        left = commit_all(worktree, "work\n\nCadre-Item: item-9\nCadre-Attempt: 2", "Agent", "agent@example.com")
    with worktree_slot(cache, "worker", "refs/remotes/origin/main") as reused:
        assert not (reused / "k.txt").exists()
    assert git("rev-parse", "refs/heads/cadre/rescue/item-9/2", cwd=remote) == left


def test_salvage_names_its_branch_from_cadres_record_never_from_the_commit_message(tmp_path):
    """A model's summary carrying `Cadre-Attempt: 0:refs/heads/evil` once made the salvage push create (or move)
    a branch the agent chose: the rescue branch now comes from the slot's owner record only."""
    remote = make_remote(tmp_path / "git", {"a.txt": "a\n"})
    main = git("rev-parse", "main", cwd=remote)
    cache = prepare_cache(tmp_path / "data", str(remote))
    forged = "work\n\nCadre-Item: x\nCadre-Attempt: 0:refs/heads/evil\n\nCadre-Item: x\nCadre-Attempt: 0:refs/heads/main"
    with worktree_slot(cache, "worker", "refs/remotes/origin/main", owner=("item-7", 1)) as worktree:
        (worktree / "k.txt").write_text("left behind\n")
        left = commit_all(worktree, forged, "Agent", "agent@example.com")
    with worktree_slot(cache, "worker", "refs/remotes/origin/main"):
        pass
    heads = git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=remote).split()
    assert heads == ["refs/heads/cadre/rescue/item-7/1", "refs/heads/main"], heads
    assert git("rev-parse", "main", cwd=remote) == main
    assert git("rev-parse", "refs/heads/cadre/rescue/item-7/1", cwd=remote) == left
