"""Cadre's own commit of an agent's worktree, with real git: nothing the agent left runs a program, breaks
the commit, or lands when it should not; what is safe is kept for a rescue branch."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.git.change_gate import excluded, risky_lines
from orchestrator.git.repo import commit_work, reset_worktree, stage_all
from orchestrator.git.workspace import prepare_cache, worktree_slot
from tests.services import git, make_remote

NAME, EMAIL = "Agent", "agent@example.test"


@pytest.fixture
def worktree(tmp_path):
    remote = make_remote(tmp_path / "git", {"README.md": "# r\n", "keys/a.txt": "key\n"})
    cache = prepare_cache(tmp_path / "data", str(remote))
    with worktree_slot(cache, "worker", "refs/remotes/origin/main") as slot:
        yield slot


def test_a_nested_repositorys_filter_never_runs_and_its_files_are_committed_plainly(worktree, tmp_path):
    marker = tmp_path / "filter-ran"
    nested = worktree / "sub"
    nested.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=nested, check=True)
    subprocess.run(["git", "config", "filter.x.clean", f"sh -c 'touch {marker}; cat'"], cwd=nested, check=True)
    (nested / ".gitattributes").write_text("* filter=x\n")
    (nested / "a.txt").write_text("a\n")
    done = commit_work(worktree, "nested\n", NAME, EMAIL)
    assert not marker.exists()
    assert "sub/.git: nested repository removed" in done.removed
    tree = git("ls-tree", "-r", "HEAD", cwd=worktree)
    assert "160000" not in tree and "sub/a.txt" in tree
    assert not done.may_land and "filter=x" in done.problems[0], "a new filter line is refused"
    assert "sub/.gitattributes" in done.left_out and "sub/.gitattributes" not in tree


def test_a_bogus_encoding_is_refused_and_never_breaks_the_commit(worktree):
    (worktree / ".gitattributes").write_text("*.txt working-tree-encoding=X-BOGUS-ENC\n")
    (worktree / "b.txt").write_text("b\n")
    done = commit_work(worktree, "bogus\n", NAME, EMAIL)
    assert done.sha and not done.may_land and "working-tree-encoding" in done.problems[0]
    assert git("ls-tree", "-r", "--name-only", "HEAD", cwd=worktree).split() == ["README.md", "b.txt", "keys/a.txt"]


def test_an_oversized_change_is_refused_and_the_rest_kept(worktree):
    (worktree / "big.bin").write_bytes(b"x" * 3000)
    (worktree / "mid1.bin").write_bytes(b"m" * 600)
    (worktree / "mid2.bin").write_bytes(b"n" * 600)
    (worktree / "small.txt").write_text("small\n")
    done = commit_work(worktree, "big\n", NAME, EMAIL, max_bytes=1000)
    committed = git("ls-tree", "-r", "--name-only", "HEAD", cwd=worktree).split()
    assert not done.may_land and "big.bin" in done.left_out
    assert "big.bin" not in committed and "small.txt" in committed
    assert sum(p in committed for p in ("mid1.bin", "mid2.bin")) == 1, "the largest go until the rest fits"


def test_a_safe_change_lands_and_artifacts_stay_out(worktree):
    (worktree / "new.txt").write_text("new\n")
    (worktree / ".aider.chat.history.md").write_text("chat\n")
    (worktree / "keys" / "a.txt").unlink()
    done = commit_work(worktree, "safe\n", NAME, EMAIL, exclude=(".aider*",))
    assert done.may_land and done.problems == () and done.left_out == ()
    assert git("ls-tree", "-r", "--name-only", "HEAD", cwd=worktree).split() == ["README.md", "new.txt"]


def test_a_reset_removes_an_agents_symlink_before_checking_out(worktree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = git("rev-parse", "HEAD", cwd=worktree)
    subprocess.run(["rm", "-rf", "keys"], cwd=worktree, check=True)
    (worktree / "keys").symlink_to(outside)
    reset_worktree(worktree, base)
    assert list(outside.iterdir()) == []
    assert not (worktree / "keys").is_symlink() and (worktree / "keys" / "a.txt").read_text() == "key\n"


def test_a_conflict_resolution_is_staged_through_the_same_gate(worktree):
    (worktree / ".gitattributes").write_text("* merge=evil\n")
    verdict = stage_all(worktree)
    assert not verdict.safe and ".gitattributes" in verdict.unsafe_paths


def test_risky_attribute_lines_and_exclusion_globs():
    assert risky_lines("# c\n*.txt text\n*.bin -filter\n*.x filter=lfs\n[attr]m merge=union\n") == \
        {"*.x filter=lfs", "[attr]m merge=union"}
    assert excluded(".aider.tags.cache.v4/x.db", (".aider*",)) and excluded("a/b/.aider.chat", (".aider*",))
    assert not excluded("src/aider.py", (".aider*",))
    assert excluded(".claude/settings.local.json", (".claude/settings.local.json",))
