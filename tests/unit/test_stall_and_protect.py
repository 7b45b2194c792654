"""The rules behind a trustworthy "done": protected globs, the stall watch, the worktree fingerprint, the
efficiency percentile, and what may settle done."""

from __future__ import annotations

import os

from orchestrator.agent.stall import StallWatch
from orchestrator.flow.efficiency import percentile
from orchestrator.landing.protected import is_protected, touched_protected
from orchestrator.state.models import Handoff, HandoffStatus
from orchestrator.untrusted.fingerprint import worktree_fingerprint
from workers.execution import done_is_recorded


class Call:
    def __init__(self, name, arguments):
        self.name, self.arguments = name, arguments


class Reply:
    def __init__(self, *calls):
        self.tool_calls = list(calls)


def test_protected_globs_match_paths_folders_and_patterns():
    globs = ["tests/*", "ci/check.sh", "docs/", "*.lock"]
    assert is_protected("tests/unit/test_a.py", globs) and is_protected("ci/check.sh", globs)
    assert is_protected("docs/a/b.md", globs) and is_protected("poetry.lock", globs)
    assert not is_protected("src/tests.py", globs) and not is_protected("ci/check.sh.bak", globs)
    assert touched_protected(["b.py", "tests/x", "a.lock"], globs) == ["a.lock", "tests/x"]
    assert touched_protected(["tests/x"], []) == [] and not is_protected("x", ["  "])


def test_the_stall_watch_counts_identical_calls_and_idle_steps():
    prints = iter(["a", "b", "c", "d"])
    watch = StallWatch(lambda: next(prints), repeats=3, idle_steps=3)
    watch.saw_reply(Reply(Call("bash", '{"command": "ls"}')))
    assert watch.stalled() is None
    watch.saw_reply(Reply(Call("bash", '{ "command":"ls" }')))  # the same call, spelled differently
    assert watch.stalled() is None
    watch.saw_reply(Reply(Call("bash", '{"command": "ls"}')))
    assert "same tool call 3 times" in watch.stalled()
    idle = StallWatch(lambda: "unchanged", repeats=9, idle_steps=3)  # nothing ever changes
    reasons = []
    for step in range(3):
        idle.saw_reply(Reply(Call("bash", f'{{"command": "echo {step}"}}')))
        reasons.append(idle.stalled())
    assert reasons[:2] == [None, None] and "changed nothing in its worktree for 3 steps" in reasons[2]


def test_the_fingerprint_sees_writes_and_ignores_git_and_symlink_targets(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "a.txt").write_text("1")
    os.symlink("/etc/passwd", tmp_path / "link")
    before = worktree_fingerprint(tmp_path)
    (tmp_path / ".git" / "index").write_text("changes in .git are not the agent's work")
    assert worktree_fingerprint(tmp_path) == before
    (tmp_path / "a.txt").write_text("22")
    assert worktree_fingerprint(tmp_path) != before


def test_percentiles_are_nearest_rank():
    assert percentile([], 0.5) is None and percentile([3.0], 0.95) == 3.0
    assert percentile([2.0, 1.0], 0.5) == 1.0 and percentile([1.0, 2.0], 0.95) == 2.0
    assert percentile([float(v) for v in range(1, 101)], 0.95) == 95.0


def test_done_needs_a_commit_or_a_recorded_nothing_to_commit():
    assert done_is_recorded(Handoff(status=HandoffStatus.LANDED, commit="abc"))
    assert not done_is_recorded(Handoff(status=HandoffStatus.LANDED))
    assert done_is_recorded(Handoff(status=HandoffStatus.NO_CHANGE))
    assert not done_is_recorded(Handoff(status=HandoffStatus.RESCUED, rescue_branch="cadre/rescue/x/1"))
