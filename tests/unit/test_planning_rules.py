"""Pure planning rules: duplicate detection and per-repository prompt overrides."""

from __future__ import annotations

from orchestrator.agent.prompts import render
from orchestrator.state.models import ItemStatus, WorkItem
from planners.planner_tools import find_duplicate, near_identical


def item(title: str, instructions: str, scope: str = "", status: ItemStatus = ItemStatus.DONE) -> WorkItem:
    return WorkItem(id=f"item-{abs(hash(title)) % 10**8}", run_id="r", cycle=1, node_id="n", title=title,
                    instructions=instructions, scope=scope, status=status)


def test_rephrasing_is_a_duplicate_but_a_sibling_task_is_not():
    assert near_identical("Add a --verbose flag to the CLI.", "add a --verbose flag to the CLI")
    assert not near_identical("write frontend/one.txt\nCreate frontend/one.txt",
                              "write frontend/two.txt\nCreate frontend/two.txt")
    done = item("Add retries to the HTTP client", "Wrap calls in tenacity with 3 attempts.", scope="net")
    assert find_duplicate([done], "net", "Add retries to the HTTP client.", "Wrap calls in tenacity with 3 attempts") == done
    assert find_duplicate([done], "ui", "Add retries to the HTTP client", "Wrap calls in tenacity with 3 attempts.") is None
    failed = item("Fix the build", "Make it pass", status=ItemStatus.FAILED)
    assert find_duplicate([failed], "", "Fix the build", "Make it pass") is None


def test_repository_prompts_override_the_shipped_ones(tmp_path):
    variables = dict(goal="g", branch="main", title="t", instructions="i", scope="", acceptance="")
    assert "Your task: t" in render("worker", "task", tmp_path, **variables)
    (tmp_path / ".cadre" / "prompts" / "worker").mkdir(parents=True)
    (tmp_path / ".cadre" / "prompts" / "worker" / "task.j2").write_text("House rules first. Task: {{ title }}")
    assert render("worker", "task", tmp_path, **variables) == "House rules first. Task: t\n"
    assert "You are a worker" in render("worker", "system", tmp_path, **variables)
