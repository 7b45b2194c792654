"""orchestrator.git.repo against real git: a temporary bare repository plays the remote."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.git import cache as git_cache
from orchestrator.git import repo as git_repo
from orchestrator.git.cache import BareCache
from orchestrator.git.runner import GitError
from orchestrator.landing.trailers import item_of_message, item_trailers, landed_items

NAME, EMAIL = "Test Agent", "agent@example.test"
IDENTITY = {"GIT_AUTHOR_NAME": NAME, "GIT_AUTHOR_EMAIL": EMAIL, "GIT_COMMITTER_NAME": NAME,
            "GIT_COMMITTER_EMAIL": EMAIL}


def run_git(cwd: Path, *args: str) -> str:
    """Run git with a per-command identity and return stdout (raises on failure)."""
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **IDENTITY}, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture()
def remote(tmp_path: Path) -> str:
    """A bare repository with branch main holding `app.txt` (5 lines) and `README.md`."""
    bare, seed = tmp_path / "remote.git", tmp_path / "seed"
    run_git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    run_git(tmp_path, "init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "app.txt").write_text("".join(f"line {i}\n" for i in range(1, 6)))
    (seed / "README.md").write_text("# demo\n")
    run_git(seed, "add", "-A")
    run_git(seed, "commit", "--quiet", "-m", "initial")
    run_git(seed, "push", "--quiet", str(bare), "HEAD:refs/heads/main")
    return str(bare)


@pytest.fixture()
def cache(tmp_path: Path, remote: str) -> BareCache:
    """A fetched cache of `remote` under tmp_path/data."""
    made = BareCache(tmp_path / "data", remote)
    made.ensure()
    made.fetch()
    return made


def worktree(cache: BareCache, name: str) -> Path:
    """A fresh worktree of the cache, detached at origin/main."""
    path = cache.root / "wt" / name
    cache.add_worktree(path, "refs/remotes/origin/main")
    return path


def test_remote_branch_head_returns_the_branch_sha(remote: str) -> None:
    assert git_repo.remote_branch_head(remote, "main") == run_git(Path(remote), "rev-parse", "main")


def test_remote_branch_head_unreachable_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.git")
    with pytest.raises(GitError) as caught:
        git_repo.remote_branch_head(missing, "main")
    message = str(caught.value)
    assert message.startswith(f"cannot reach repository {missing}: ")
    assert "does not appear to be a git repository" in message and "\n" not in message


def test_remote_branch_head_missing_branch(remote: str) -> None:
    with pytest.raises(GitError, match=r"^branch nope not found in .*remote\.git$"):
        git_repo.remote_branch_head(remote, "nope")


def test_cache_ensure_is_idempotent_and_fetches_heads(tmp_path: Path, remote: str) -> None:
    cache = BareCache(tmp_path / "data", remote)
    cache.ensure()
    cache.ensure()
    assert cache.path.parent == tmp_path / "data" / "caches" and cache.path.name.endswith(".git")
    assert len(cache.path.name) == len("0123456789abcdef.git")
    with pytest.raises(GitError, match="branch main not found in cache"):
        cache.head("main")
    cache.fetch()
    assert cache.head("main") == git_repo.remote_branch_head(remote, "main")
    assert run_git(cache.path, "config", "--get-all", "remote.origin.fetch") == git_cache.ORIGIN_REFSPEC


def _ensure_and_fetch(root: str, url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    """Child process body: race the others into ensure() + fetch(); exit status 1 on failure."""
    cache = BareCache(Path(root), url)
    barrier.wait(timeout=10)
    try:
        cache.ensure()
        cache.fetch()
    except GitError as exc:
        print(exc)
        os._exit(1)


def test_concurrent_fetches_from_four_processes_all_succeed(tmp_path: Path, remote: str) -> None:
    seed = tmp_path / "seed"
    for n in range(6):  # several branches so every fetch has refs to lock
        run_git(seed, "push", "--quiet", remote, f"HEAD:refs/heads/topic-{n}")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_ensure_and_fetch, args=(str(tmp_path / "data"), remote, barrier))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    assert BareCache(tmp_path / "data", remote).head("topic-5") == git_repo.remote_branch_head(remote, "main")


def test_commit_all_returns_none_without_changes_and_keeps_trailers(cache: BareCache) -> None:
    wt = worktree(cache, "a")
    assert git_repo.commit_all(wt, "nothing", NAME, EMAIL) is None
    (wt / "new.txt").write_text("hello\n")
    message = "Add greeting\n\nBody line.\n\nCadre-Item: abc123\n"
    sha = git_repo.commit_all(wt, message, "Someone", "someone@example.test")
    assert sha == git_repo.head_sha(wt)
    assert run_git(wt, "log", "-1", "--format=%B") + "\n" == message
    assert run_git(wt, "log", "-1", "--format=%an <%ae>|%cn") == "Someone <someone@example.test>|Someone"
    assert git_repo.changed_paths(wt) == []


def test_commit_all_moves_the_branch_an_agent_checked_out_and_keeps_comment_lines(cache: BareCache) -> None:
    wt = worktree(cache, "a")
    run_git(wt, "checkout", "-q", "-b", "agent-branch")
    (wt / "notes.txt").write_text("kept\n")
    message = "Subject\n\n# not a comment to git here\n\n\n"
    sha = git_repo.commit_all(wt, message, NAME, EMAIL)
    assert run_git(wt, "rev-parse", "refs/heads/agent-branch") == sha == git_repo.head_sha(wt)
    assert run_git(wt, "symbolic-ref", "HEAD") == "refs/heads/agent-branch"
    raw = subprocess.run(["git", "cat-file", "commit", sha], cwd=wt, capture_output=True, text=True, check=True).stdout
    assert raw.split("\n\n", 1)[1] == message
    assert run_git(wt, "fsck", "--no-dangling", "--no-progress") == ""
    assert git_repo.changed_paths(wt) == [] and git_repo.commit_all(wt, "again", NAME, EMAIL) is None


def test_changed_paths_and_diff_stats(cache: BareCache) -> None:
    wt = worktree(cache, "a")
    base = git_repo.head_sha(wt)
    (wt / "app.txt").write_text("line 1\nLINE 2\nline 3\nline 4\nline 5\nline 6\n")  # +2 -1
    (wt / "docs").mkdir()
    (wt / "docs" / "guide.md").write_text("a\nb\nc\n")  # +3
    (wt / "README.md").unlink()  # -1
    assert git_repo.changed_paths(wt) == ["README.md", "app.txt", "docs/guide.md"]
    head = git_repo.commit_all(wt, "edit", NAME, EMAIL)
    assert head is not None
    stats = git_repo.diff_stats(wt, base, head)
    assert stats.files == ["README.md", "app.txt", "docs/guide.md"]
    assert (stats.insertions, stats.deletions) == (5, 2)
    assert git_repo.commits_between(wt, base, head) == [head]
    assert git_repo.log_subjects(wt, "HEAD") == ["edit", "initial"]
    assert git_repo.log_subjects(cache.path, "refs/remotes/origin/main") == ["initial"]


def _commit_file(wt: Path, name: str, text: str, subject: str) -> str:
    (wt / name).write_text(text)
    sha = git_repo.commit_all(wt, subject, NAME, EMAIL)
    assert sha is not None
    return sha


def test_rejected_push_then_rebase_gives_linear_history(cache: BareCache, remote: str) -> None:
    first, second = worktree(cache, "a"), worktree(cache, "b")
    _commit_file(first, "one.txt", "1\n", "first change")
    _commit_file(second, "two.txt", "2\n", "second change")
    assert git_repo.push(first, remote, "HEAD:refs/heads/main").ok
    refused = git_repo.push(second, remote, "HEAD:refs/heads/main")
    assert (refused.ok, refused.rejected) == (False, True)
    # the objects of the winning push sit in the shared cache, so git says non-fast-forward
    assert refused.message == "refs/heads/main: [rejected] (non-fast-forward)"
    cache.fetch()
    assert git_repo.rebase_onto(second, "refs/remotes/origin/main") == []
    result = git_repo.push(second, remote, "HEAD:refs/heads/main")
    assert (result.ok, result.rejected) == (True, False)
    assert git_repo.log_subjects(remote, "main") == ["second change", "first change", "initial"]
    assert run_git(Path(remote), "log", "--merges", "--format=%H", "main") == ""


def test_push_rejected_as_fetch_first_from_another_host(cache: BareCache, remote: str, tmp_path: Path) -> None:
    other_host = BareCache(tmp_path / "other-host", remote)
    other_host.ensure()
    other_host.fetch()
    _commit_file(worktree(cache, "a"), "one.txt", "1\n", "first change")
    assert git_repo.push(cache.root / "wt" / "a", remote, "HEAD:refs/heads/main").ok
    late = worktree(other_host, "b")
    _commit_file(late, "two.txt", "2\n", "second change")
    refused = git_repo.push(late, remote, "HEAD:refs/heads/main")
    assert refused == git_repo.PushResult(ok=False, rejected=True,
                                          message="refs/heads/main: [rejected] (fetch first)")


def test_push_to_unreachable_remote_raises_one_line(cache: BareCache, tmp_path: Path) -> None:
    wt = worktree(cache, "a")
    with pytest.raises(GitError) as caught:
        git_repo.push(wt, str(tmp_path / "gone.git"), "HEAD:refs/heads/main")
    assert str(caught.value).startswith("push to ") and "\n" not in str(caught.value)


def _diverge_on_same_line(cache: BareCache, remote: str) -> Path:
    """Push a change of app.txt line 3 from one worktree; return another that edits it too."""
    first, second = worktree(cache, "a"), worktree(cache, "b")
    _commit_file(first, "app.txt", "line 1\nline 2\nTHEIRS\nline 4\nline 5\n", "theirs")
    assert git_repo.push(first, remote, "HEAD:refs/heads/main").ok
    _commit_file(second, "app.txt", "line 1\nline 2\nOURS\nline 4\nline 5\n", "ours")
    _commit_file(second, "extra.txt", "x\n", "Cadre-Item: it-1")
    cache.fetch()
    return second


def test_conflicting_rebase_reports_paths_and_aborts(cache: BareCache, remote: str) -> None:
    wt = _diverge_on_same_line(cache, remote)
    before = git_repo.head_sha(wt)
    assert not git_repo.rebase_in_progress(wt)
    assert git_repo.rebase_onto(wt, "refs/remotes/origin/main") == ["app.txt"]
    assert git_repo.rebase_in_progress(wt)
    git_repo.abort_rebase(wt)
    assert not git_repo.rebase_in_progress(wt)
    assert git_repo.head_sha(wt) == before and git_repo.changed_paths(wt) == []


def test_continue_rebase_after_resolving(cache: BareCache, remote: str) -> None:
    wt = _diverge_on_same_line(cache, remote)
    assert git_repo.rebase_onto(wt, "refs/remotes/origin/main", NAME, EMAIL) == ["app.txt"]
    assert git_repo.continue_rebase(wt, NAME, EMAIL) == ["app.txt"]  # not resolved yet
    (wt / "app.txt").write_text("line 1\nline 2\nTHEIRS and OURS\nline 4\nline 5\n")
    run_git(wt, "add", "app.txt")
    assert git_repo.continue_rebase(wt, NAME, EMAIL) == []
    assert not git_repo.rebase_in_progress(wt)
    assert git_repo.commits_between(wt, "refs/remotes/origin/main", "HEAD") == \
        run_git(wt, "rev-list", "--reverse", "refs/remotes/origin/main..HEAD").split()
    assert git_repo.log_subjects(wt, "HEAD", max_count=3) == ["Cadre-Item: it-1", "ours", "theirs"]
    assert git_repo.push(wt, remote, "HEAD:refs/heads/main").ok
    with pytest.raises(GitError, match="no rebase in progress"):
        git_repo.continue_rebase(wt, NAME, EMAIL)


def test_landed_items_reads_only_the_trailer_block_cadre_wrote_at_the_end(cache: BareCache, remote: str) -> None:
    wt = worktree(cache, "a")
    first = _commit_file(wt, "x.txt", "x\n", "Do x\n\nCadre-Item: abc\nCadre-Attempt: 2")
    _commit_file(wt, "y.txt", "y\n", "Do y")
    # A model's summary that imitates trailers (before a `---` line git's parser would take them) is not read:
    forged = "Do z\n\nCadre-Item: victim\nCadre-Attempt: 1\n---\nmore\n\nCadre-Item: zed\nCadre-Attempt: 1"
    third = _commit_file(wt, "z.txt", "z\n", forged)
    assert landed_items(wt, "HEAD") == {"abc": first, "zed": third}
    assert "ab" not in landed_items(wt, "HEAD")  # a prefix is not the value
    assert landed_items(wt, "HEAD", max_count=1) == {"zed": third}
    assert landed_items(wt, "refs/remotes/origin/main") == {}
    assert item_of_message("t\n\nCadre-Item: x:refs/heads/evil\nCadre-Attempt: 1\n") is None
    assert item_of_message("t\n\nCadre-Item: ../x\nCadre-Attempt: 1\n") is None
    with pytest.raises(GitError, match="invalid item id"):
        item_trailers("item-1:refs/heads/main", 1)


def test_a_commit_message_with_a_nul_is_refused_never_cut(cache: BareCache) -> None:
    wt = worktree(cache, "a")
    (wt / "n.txt").write_text("n\n")
    with pytest.raises(GitError, match="NUL"):
        git_repo.commit_all(wt, "title\n\nsummary\0\n\nCadre-Item: forged\n", NAME, EMAIL)


def test_push_refuses_a_ref_git_would_not_accept(cache: BareCache) -> None:
    wt = worktree(cache, "a")
    for refspec in ("HEAD:refs/heads/a..b", "HEAD:refs/heads/x:refs/heads/main", "HEAD:refs/heads/a b"):
        with pytest.raises(GitError, match="invalid ref"):
            git_repo.push(wt, cache.url, refspec)


def test_cadres_git_runs_no_hooks_even_if_a_cache_config_asks_for_them(cache: BareCache, tmp_path: Path) -> None:
    """Hooks placed in the cache (and a core.hooksPath pointing at them) never run in Cadre's own git."""
    marker = tmp_path / "hook-ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-commit", "post-checkout", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / hook).chmod(0o755)
        (cache.path / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (cache.path / "hooks" / hook).chmod(0o755)
    run_git(cache.path, "config", "core.hooksPath", str(hooks))
    wt = worktree(cache, "a")
    base = git_repo.head_sha(wt)
    _commit_file(wt, "h.txt", "h\n", "with hooks around")
    git_repo.reset_worktree(wt, base)
    assert not marker.exists()
