"""The worker's conflict-resolution turn: its agent fixes a stopped rebase in the worktree."""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.agent.loop import Tool, params
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import run_prompts, run_role_agent, workspace_tools
from orchestrator.git.repo import continue_rebase, stage_all
from orchestrator.state.models import Run, WorkItem
from orchestrator.state.store import Store
from orchestrator.untrusted.files import RefusedPath, is_regular_file, read_text

log = logging.getLogger(__name__)
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")


def still_marked(worktree: Path, paths: list[str], max_bytes: int) -> list[str]:
    """The paths among `paths` that still contain conflict markers; a path that is no longer a regular file
    reached without a symlink, or is larger than `max_bytes`, counts as unresolved (it is the agent's file,
    read through the one door for hostile input)."""
    marked = []
    for path in paths:
        if not is_regular_file(worktree, path):
            if (worktree / path).is_symlink() or (worktree / path).exists():
                marked.append(path)
            continue
        try:
            text = read_text(worktree, path, max_bytes)
        except RefusedPath:
            marked.append(path)
            continue
        if any(line.startswith(CONFLICT_MARKERS) for line in text.splitlines()):
            marked.append(path)
    return marked


def conflict_resolver(store: Store, settings: CadreSettings, run: Run, item: WorkItem, worktree: Path):
    """A resolver for a `Landing` strategy (`orchestrator.landing`): one bounded agent turn per conflict."""
    turns = 0

    def resolve(conflicted: list[str]) -> bool:
        nonlocal turns
        turns += 1
        store.events.emit(run.id, "conflict", item_id=item.id, attempt=item.attempt, paths=conflicted)
        tools = workspace_tools(settings, worktree)
        finish = Tool("finish", "End the turn once every conflict is resolved.",
                      params(["summary"], summary="how the conflicts were resolved"), lambda _a: "finished",
                      terminal=True)
        prompts = run_prompts(settings, run, worktree)
        variables = dict(goal=run.goal, branch=run.branch, title=item.title, instructions=item.instructions,
                         paths=conflicted)
        result = run_role_agent(store, settings, "worker", run.id, f"worker-{item.id}-{item.attempt}-conflict-{turns}",
                                prompts.render("worker", "conflict_system", **variables),
                                prompts.render("worker", "conflict", **variables),
                                tools.explore_tools() + tools.edit_tools() + [finish],
                                max_steps=settings.conflict_max_steps,
                                scopes={"cycle": str(item.cycle), "node": item.node_id, "item": item.id})
        max_bytes = settings.max_commit_bytes
        if result.status != "finished" or still_marked(worktree, conflicted, max_bytes):
            log.info("item %s: conflict turn ended %s with markers left", item.id, result.status)
            return False
        verdict = stage_all(worktree, max_bytes)
        if not verdict.safe:
            log.warning("item %s: conflict resolution refused: %s", item.id, "; ".join(verdict.problems))
            return False
        remaining = continue_rebase(worktree, settings.git_author_name, settings.git_author_email)
        return not remaining

    return resolve
