"""One attempt's work inside a worktree: agent, commit, land; work in progress never lost."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from orchestrator.agent.backends import artifact_patterns, check_backend, preset_for
from orchestrator.agent.loop import AgentResult, Tool, params
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import run_prompts, run_role_agent, workspace_tools
from orchestrator.flow.runs import repository_cache
from orchestrator.git.cache import BareCache
from orchestrator.git.repo import CommittedWork, commit_work, commits_between, diff_stats, unstage_onto_merge_base
from orchestrator.git.trailers import item_trailers
from orchestrator.git.workspace import worktree_slot
from orchestrator.queues.shutdown import shutdown_requested
from orchestrator.state.models import HANDOFF_NOTES, Handoff, HandoffStatus, ItemStatus, Run, RunStatus, WorkItem
from orchestrator.state.store import Store
from workers.conflicts import conflict_resolver
from workers.external_agent import run_external_agent
from orchestrator.untrusted.text import clean_text, one_line
from workers.integrate import land, land_via_queue, landed_commit, rescue
from workers.lease import LeaseHeartbeat

log = logging.getLogger(__name__)
# An agent that ended at one of these did not finish: its work goes to a rescue branch, handed off `partial`.
LIMIT_STATUSES = frozenset({"step_limit", "cost_limit", "limit"})


@dataclass(frozen=True)
class Outcome:
    """How an attempt ends: settle with `status`, or (status None) requeue for a new attempt, as a
    failure or, when `interrupted` (a graceful stop), without using up an attempt. `attempt_outcome`
    names how the attempt ended when requeued (default: `error`, or `interrupted`)."""

    status: ItemStatus | None
    handoff: Handoff
    reason: str = ""
    interrupted: bool = False
    attempt_outcome: str = ""


HANDOFF_PARAMETERS = params(
    ["summary"], summary="what you did, in a few sentences",
    concerns="anything that worries you about the change or the code around it (optional)",
    deviations="where and why you departed from the instructions (optional)",
    findings="facts about the code base the planner should know (optional)",
    suggestions="follow-up work you recommend (optional)",
)
# Lines of model text that git's own trailer parser could take for Cadre's trailers (or for the `---` that
# ends a message): quoted, so that `git log --format=%(trailers)` reads what Cadre reads.
TRAILER_LIKE = re.compile(r"^(cadre-[\w-]*\s*:|---)", re.IGNORECASE | re.MULTILINE)


def handoff_notes(arguments: dict) -> dict[str, str]:
    """The structured part of the agent's handoff (concerns, deviations, findings, suggestions), cleaned of
    control characters and escape sequences: it reaches prompts, logs and terminals."""
    return {key: clean_text(str(arguments.get(key) or "")) for key in HANDOFF_NOTES}


def commit_message(item: WorkItem, summary: str) -> str:
    """The commit message: the item's title (one line), the agent's summary (cleaned: a NUL would cut the
    message, a control character would reach terminals), and last the trailers naming item and attempt."""
    body = TRAILER_LIKE.sub(r"> \1", clean_text(summary)).strip() or "(no summary)"
    return f"{one_line(item.title) or item.id}\n\n{body}\n\n{item_trailers(item.id, item.attempt)}"


def commit_attempt(settings: CadreSettings, worktree: Path, message: str,
                   artifacts: tuple[str, ...]) -> CommittedWork:
    """Commit what the agent changed, safely (`orchestrator.git.repo.commit_work`), as Cadre's author."""
    return commit_work(worktree, message, settings.git_author_name, settings.git_author_email, exclude=artifacts,
                       max_bytes=settings.max_commit_bytes)


def attempt_item(store: Store, settings: CadreSettings, run: Run, item: WorkItem, lease: LeaseHeartbeat) -> Outcome:
    """Carry out one attempt; a change already on the branch (an earlier attempt landed it) is not redone.

    A continuation item (`start_ref`: a partial item's rescue branch) starts from that branch's work,
    staged on its base, so its commit carries the earlier work and its own as one change.
    """
    cache = repository_cache(store, settings, run)
    upstream = f"refs/remotes/origin/{run.branch}"
    landed = landed_commit(cache.path, upstream, item.id)
    if landed is not None:
        return Outcome(ItemStatus.DONE, Handoff(status=HandoffStatus.LANDED, commit=landed, attempt=item.attempt,
                                                summary="already on the branch: an earlier attempt landed it"))
    artifacts = artifact_patterns(preset_for(run.worker_backend, settings), settings)
    start = f"refs/remotes/origin/{item.start_ref}" if item.start_ref else upstream
    with worktree_slot(cache, "worker", start, owner=(item.id, item.attempt)) as worktree:
        try:
            if item.start_ref:
                unstage_onto_merge_base(worktree, upstream)
            return _work(store, settings, run, item, lease, cache, worktree, artifacts)
        except SoftTimeLimitExceeded:
            branch = preserve_work(settings, cache, item, worktree, upstream, artifacts)
            return Outcome(ItemStatus.FAILED, Handoff(
                status=HandoffStatus.PARTIAL if branch else HandoffStatus.FAILED, rescue_branch=branch,
                attempt=item.attempt, summary="stopped at Cadre's time limit"
                + (f"; work in progress on {branch}" if branch else "")), "time limit")
        except BaseException:
            preserve_work(settings, cache, item, worktree, upstream, artifacts)
            raise


def preserve_work(settings: CadreSettings, cache: BareCache, item: WorkItem, worktree: Path, upstream: str,
                  artifacts: tuple[str, ...] = ()) -> str | None:
    """Commit anything uncommitted and push unlanded commits to the rescue branch; returns its name, if any.

    Called before a worktree is given up on an error path: a slot reset must never destroy work.
    """
    try:
        commit_attempt(settings, worktree, f"WIP: {one_line(item.title)}\n\n{item_trailers(item.id, item.attempt)}",
                       artifacts)
        if commits_between(worktree, upstream, "HEAD"):
            return rescue(worktree, cache, item.id, item.attempt, "attempt ended by an error").rescue_branch
    except Exception:  # preserving is best effort on an error path: log it, keep the original error
        log.exception("item %s attempt %s: could not preserve work in progress", item.id, item.attempt)
    return None


def _work(store: Store, settings: CadreSettings, run: Run, item: WorkItem, lease: LeaseHeartbeat,
          cache: BareCache, worktree: Path, artifacts: tuple[str, ...]) -> Outcome:
    store.events.emit(run.id, "agent_started", item_id=item.id, attempt=item.attempt)
    result = _run_agent(store, settings, run, item, worktree)
    store.events.emit(run.id, "agent_finished", item_id=item.id, attempt=item.attempt, status=result.status)
    summary = clean_text(str(result.final_arguments.get("summary") or f"agent ended: {result.status}"))
    measured = dict(tokens=result.tokens, cost_usd=round(result.cost_usd, 6), attempt=item.attempt,
                    usage_reported=result.usage_reported, **handoff_notes(result.final_arguments))
    if result.status in LIMIT_STATUSES:
        return _keep_partial(settings, item, worktree, cache, measured, limit_reason(settings, result), summary,
                             artifacts)
    if result.status in {"stopped", "failed"}:
        reason = summary if result.status == "failed" else stop_reason(store, run)
        return _stopped(settings, item, worktree, cache, measured, reason, artifacts)
    committed = commit_attempt(settings, worktree, commit_message(item, summary), artifacts)
    if not committed.may_land:
        return _refused_or_unchanged(item, worktree, cache, measured, summary, committed)
    resolver = conflict_resolver(store, settings, run, item, worktree)
    if settings.integration == "queue":
        landing = land_via_queue(store, worktree, cache, run.branch, item.id, item.attempt,
                                 settings.land_push_interval_seconds, lease.still_holds, resolver)
    else:
        landing = land(worktree, cache, run.branch, item.id, item.attempt, settings.push_attempts,
                       lease.still_holds, resolver)
    stats = diff_stats(worktree, f"{landing.commit}~1", landing.commit)
    store.events.emit(run.id, "pushed" if landing.landed else "rescued", item_id=item.id, attempt=item.attempt,
                      commit=landing.commit, retries=landing.retries, rescue_branch=landing.rescue_branch,
                      reason=landing.reason, conflicted_paths=landing.conflicted_paths)
    if not landing.landed:
        summary = f"{summary}\n[not landed: {landing.reason}; commit kept on {landing.rescue_branch}]"
    handoff = Handoff(
        status=HandoffStatus.LANDED if landing.landed else HandoffStatus.RESCUED, summary=summary,
        commit=landing.commit if landing.landed else None, rescue_branch=landing.rescue_branch,
        files_changed=stats.files, insertions=stats.insertions, deletions=stats.deletions,
        conflicted_paths=landing.conflicted_paths, **measured,
    )
    if landing.stale:  # our lease lapsed (frozen, cut off): as the reaper would, hand the item to a new attempt
        return Outcome(None, handoff, landing.reason, attempt_outcome="lost")
    return Outcome(ItemStatus.DONE if landing.landed else ItemStatus.FAILED, handoff, landing.reason)


def limit_reason(settings: CadreSettings, result: AgentResult) -> str:
    """Which limit an agent stopped at."""
    if result.status == "step_limit":
        return f"its step limit ({result.steps} steps)"
    if result.status == "cost_limit":
        return f"the item cost budget (${settings.item_max_cost_usd:g})"
    return result.detail or "its limit"


def stop_reason(store: Store, run: Run) -> str:
    """Why an agent stopped before finishing (a shutdown, or its run ended)."""
    if shutdown_requested():
        return "worker shutting down"
    current = store.runs.get(run.id)
    if current.status is not RunStatus.RUNNING:
        return f"run ended {current.status.value}" + (f": {current.reason}" if current.reason else "")
    return "agent stopped"


def _refused_or_unchanged(item: WorkItem, worktree: Path, cache: BareCache, measured: dict, summary: str,
                          committed: CommittedWork) -> Outcome:
    """Nothing to land: the agent changed nothing, or its change may not land (too large, risky attributes):
    what was safe to keep goes to the rescue branch, and the handoff says what was refused and left out."""
    if not committed.problems:
        notes = f"\n{committed.notes()}" if committed.removed else ""
        return Outcome(ItemStatus.DONE, Handoff(status=HandoffStatus.NO_CHANGE, summary=summary + notes, **measured))
    reason = "refused: " + "; ".join(committed.problems)
    branch = rescue(worktree, cache, item.id, item.attempt, reason).rescue_branch if committed.sha else None
    handoff = Handoff(status=HandoffStatus.RESCUED if branch else HandoffStatus.FAILED, rescue_branch=branch,
                      summary=f"{summary}\n[not landed, {committed.notes()}"
                              + (f"\nwhat was safe to keep is on {branch}]" if branch else "]"), **measured)
    return Outcome(ItemStatus.FAILED, handoff, reason)


def _rescue_wip(settings: CadreSettings, item: WorkItem, worktree: Path, cache: BareCache, reason: str,
                artifacts: tuple[str, ...]) -> str | None:
    """Commit the work in progress and push it to the attempt's rescue branch; its name, or None if no change."""
    wip = commit_attempt(settings, worktree, f"WIP: {one_line(item.title)}\n\nStopped: {one_line(reason, 500)}\n\n"
                         f"{item_trailers(item.id, item.attempt)}", artifacts)
    return rescue(worktree, cache, item.id, item.attempt, reason).rescue_branch if wip.sha else None


def _keep_partial(settings: CadreSettings, item: WorkItem, worktree: Path, cache: BareCache, measured: dict,
                  reason: str, summary: str, artifacts: tuple[str, ...]) -> Outcome:
    """The agent stopped at a limit: nothing lands; its work waits on the rescue branch for a continuation."""
    branch = _rescue_wip(settings, item, worktree, cache, reason, artifacts)
    handoff = Handoff(status=HandoffStatus.PARTIAL if branch else HandoffStatus.FAILED, rescue_branch=branch,
                      summary=f"stopped at {reason}" + (f"; work in progress on {branch} (continue from it with "
                                                        f"create_task start_from)" if branch else "; nothing changed")
                      + (f"\n{summary}" if summary else ""), **measured)
    return Outcome(ItemStatus.FAILED, handoff, f"stopped at {reason}")


def _stopped(settings: CadreSettings, item: WorkItem, worktree: Path, cache: BareCache, measured: dict,
             reason: str, artifacts: tuple[str, ...]) -> Outcome:
    """The agent stopped early or failed: its work in progress goes to the rescue branch; requeue on shutdown."""
    branch = _rescue_wip(settings, item, worktree, cache, reason, artifacts)
    handoff = Handoff(status=HandoffStatus.RESCUED if branch else HandoffStatus.FAILED, rescue_branch=branch,
                      summary=f"stopped: {reason}" + (f"; work in progress on {branch}" if branch else ""), **measured)
    if shutdown_requested():
        return Outcome(None, handoff, reason, interrupted=True)
    return Outcome(ItemStatus.FAILED, handoff, reason)


def _run_agent(store: Store, settings: CadreSettings, run: Run, item: WorkItem, worktree: Path) -> AgentResult:
    """The run's worker backend on this item: the builtin loop, or an external agent program."""
    variables = dict(goal=run.goal, branch=run.branch, title=item.title, instructions=item.instructions,
                     scope=item.scope, acceptance=item.acceptance, continued_from=item.start_ref or "")
    preset = preset_for(run.worker_backend, settings)
    if preset is not None:
        check_backend(run.worker_backend, settings)
        return run_external_agent(store, settings, run, item, worktree, preset, variables)
    tools = workspace_tools(settings, worktree)
    finish = Tool("finish", "End the task with your handoff to the planner that asked for it.", HANDOFF_PARAMETERS,
                  lambda _a: "finished", terminal=True)
    prompts = run_prompts(settings, run, worktree)
    return run_role_agent(store, "worker", run.id, f"worker-{item.id}-{item.attempt}",
                          prompts.render("worker", "system", **variables), prompts.render("worker", "task", **variables),
                          tools.explore_tools() + tools.edit_tools() + [finish],
                          scopes={"cycle": str(item.cycle), "node": item.node_id, "item": item.id},
                          max_cost_usd=settings.item_max_cost_usd)
