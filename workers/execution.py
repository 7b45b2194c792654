"""One work item's attempt: claim, workspace, agent, commit, land, handoff."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from orchestrator.agent_loop import Tool, params
from orchestrator.agent_runner import run_role_agent
from orchestrator.cycle_flow import item_settled
from orchestrator.git_repo import BareCache, commit_all, diff_stats
from orchestrator.models import TERMINAL_RUN_STATUSES, Handoff, HandoffStatus, ItemStatus, Run, WorkItem
from orchestrator.prompts import render
from orchestrator.settings import CadreSettings, get_settings
from orchestrator.store import Store
from orchestrator.workspace import prepare_cache, worktree_slot
from orchestrator.workspace_tools import WorkspaceTools
from workers.integrate import land

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    """Refreshes an attempt's lease every third of its TTL while the attempt runs."""

    def __init__(self, store: Store, item_id: str, attempt: int, lease_seconds: int):
        self.store, self.item_id, self.attempt, self.lease_seconds = store, item_id, attempt, lease_seconds
        self.held = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{item_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            if not self.store.refresh_lease(self.item_id, self.attempt, self.lease_seconds):
                self.held = False
                log.warning("item %s attempt %s lost its lease", self.item_id, self.attempt)
                return

    def still_holds(self) -> bool:
        """Whether this attempt still holds the lease (checked against Redis now)."""
        self.held = self.held and self.store.refresh_lease(self.item_id, self.attempt, self.lease_seconds)
        return self.held

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def commit_message(item: WorkItem, summary: str) -> str:
    """The commit message: the item's title, the agent's summary, and trailers naming item and attempt."""
    body = summary.strip() or "(no summary)"
    return f"{item.title}\n\n{body}\n\nCadre-Item: {item.id}\nCadre-Attempt: {item.attempt}\n"


def execute_work_item(store: Store, item_id: str) -> None:
    """Claim and carry out one attempt of a work item; duplicate deliveries are dropped.

    The item always settles: `done` with a handoff when the agent ran (landed, rescued or no change),
    `failed` with the error otherwise; then its planner node is told.
    """
    settings = get_settings()
    item = store.claim_item(item_id, settings.lease_seconds)
    if item is None:
        log.info("item %s is not pending; duplicate delivery dropped", item_id)
        return
    run = store.run(item.run_id)
    store.emit(run.id, "item_claimed", item_id=item.id, attempt=item.attempt)
    started = time.monotonic()
    status, handoff = ItemStatus.FAILED, Handoff(status=HandoffStatus.FAILED, summary="not started",
                                                  attempt=item.attempt)
    try:
        if run.status in TERMINAL_RUN_STATUSES:
            handoff = Handoff(status=HandoffStatus.FAILED, summary=f"run already {run.status}", attempt=item.attempt)
        else:
            with LeaseHeartbeat(store, item.id, item.attempt, settings.lease_seconds) as lease:
                handoff = _attempt(store, settings, run, item, lease)
            landed_or_nothing = {HandoffStatus.LANDED, HandoffStatus.NO_CHANGE}
            status = ItemStatus.DONE if handoff.status in landed_or_nothing else ItemStatus.FAILED
    except BaseException as exc:
        handoff = Handoff(status=HandoffStatus.FAILED, summary=f"{type(exc).__name__}: {exc}", attempt=item.attempt)
        raise
    finally:
        handoff = handoff.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
        settled = store.settle_item(item.id, item.attempt, status, handoff)
        if settled is not None:
            store.emit(run.id, "handoff", item_id=item.id, status=handoff.status.value, commit=handoff.commit,
                       rescue_branch=handoff.rescue_branch, summary=handoff.summary)
            item_settled(store, settled)


def _attempt(store: Store, settings: CadreSettings, run: Run, item: WorkItem, lease: LeaseHeartbeat) -> Handoff:
    cache = prepare_cache(settings.data_dir, run.repo)
    with worktree_slot(cache, "worker", f"refs/remotes/origin/{run.branch}") as worktree:
        result = _run_agent(store, settings, run, item, worktree)
        summary = str(result.final_arguments.get("summary") or f"agent ended: {result.status}")
        measured = dict(summary=summary, tokens=result.tokens, cost_usd=round(result.cost_usd, 6), attempt=item.attempt)
        if result.status == "stopped":
            return Handoff(status=HandoffStatus.FAILED, **measured | {"summary": f"stopped: {summary}"})
        sha = commit_all(worktree, commit_message(item, summary), settings.git_author_name, settings.git_author_email)
        if sha is None:
            return Handoff(status=HandoffStatus.NO_CHANGE, **measured)
        return _land(store, settings, run, item, worktree, cache, lease, measured)


def _run_agent(store: Store, settings: CadreSettings, run: Run, item: WorkItem, worktree: Path):
    tools = WorkspaceTools(worktree, settings.command_timeout_seconds)
    finish = Tool("finish", "End the task with a summary of what you changed and anything the planner should know.",
                  params(["summary"], summary="what was done, concerns, findings"), lambda _a: "finished",
                  terminal=True)
    variables = dict(goal=run.goal, branch=run.branch, title=item.title, instructions=item.instructions,
                     scope=item.scope, acceptance=item.acceptance)
    return run_role_agent(store, "worker", run.id, f"worker-{item.id}-{item.attempt}",
                          render("worker", "system", **variables), render("worker", "task", **variables),
                          tools.explore_tools() + tools.edit_tools() + [finish])


def _land(store: Store, settings: CadreSettings, run: Run, item: WorkItem, worktree: Path, cache: BareCache,
          lease: LeaseHeartbeat, measured: dict) -> Handoff:
    landing = land(worktree, cache, run.branch, item.id, item.attempt, settings.push_attempts, lease.still_holds)
    stats = diff_stats(worktree, f"{landing.commit}~1", landing.commit)
    store.emit(run.id, "pushed" if landing.landed else "rescued", item_id=item.id, commit=landing.commit,
               retries=landing.retries, rescue_branch=landing.rescue_branch, reason=landing.reason)
    summary = measured["summary"]
    if not landing.landed:
        summary = f"{summary}\n[not landed: {landing.reason}; commit kept on {landing.rescue_branch}]"
    return Handoff(
        status=HandoffStatus.LANDED if landing.landed else HandoffStatus.RESCUED,
        commit=landing.commit if landing.landed else None, rescue_branch=landing.rescue_branch,
        files_changed=stats.files, insertions=stats.insertions, deletions=stats.deletions,
        conflicted_paths=landing.conflicted_paths, **measured | {"summary": summary},
    )
