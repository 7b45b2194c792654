"""One attempt's work inside a worktree, in the order it happens; work in progress is never lost.

    already landed? ─▶ a worktree slot ─▶ paused? ─▶ the agent ─▶ a safe commit ─▶ landing ─▶ the handoff
         │                                  │            │               │             │
    AlreadyLanded             PausedBeforeStart  StoppedAtLimit,   NothingToLand  rescued, or stale
                                                 AgentStopped (work on the          (a new attempt)
                                                 rescue branch)

Each early exit is an `AttemptExit` (`workers/outcomes.py`) carrying the attempt's outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from orchestrator.agent.backends import artifact_patterns, check_backend, preset_for
from orchestrator.agent.loop import AgentResult, Tool, params
from orchestrator.agent.stall import StallWatch
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import run_prompts, run_role_agent, workspace_tools
from orchestrator.flow.repository import repository_cache
from orchestrator.flow.steering import guidance_for
from orchestrator.git.cache import BareCache
from orchestrator.git.repo import CommittedWork, commits_between, diff_stats, unstage_onto_merge_base
from orchestrator.git.workspace import worktree_slot
from orchestrator.landing.outcomes import LandingResult
from orchestrator.landing.protected import touched_protected
from orchestrator.landing.protocol import Landing
from orchestrator.landing.rescue import rescue
from orchestrator.landing.trailers import landed_commit
from orchestrator.queues.dispatch import dispatch_work_item
from orchestrator.queues.shutdown import shutdown_requested
from orchestrator.state.models import AttemptOutcome, Handoff, HandoffStatus, Run, WorkItem, new_id
from orchestrator.state.store import Store
from orchestrator.untrusted.fingerprint import worktree_fingerprint
from orchestrator.untrusted.text import clean_text, one_line
from workers.commit_message import commit_attempt, commit_message, handoff_notes, wip_message
from workers.conflicts import conflict_resolver
from workers.external_agent import run_external_agent
from workers.lease import LeaseHeartbeat
from workers.outcomes import (AgentStopped, AlreadyLanded, AttemptExit, Next, NothingToLand, Outcome, PausedBeforeStart,
                              Stalled, StoppedAtLimit, TouchedProtected)

log = logging.getLogger(__name__)
# An agent that ended at one of these did not finish: its work goes to a rescue branch, handed off `partial`.
LIMIT_STATUSES = frozenset({"step_limit", "cost_limit", "limit"})
# The reason recorded on an item that settles `done` without a commit: there was nothing to commit.
NOTHING_TO_COMMIT = "nothing to commit: the agent's work left no file changed"

HANDOFF_PARAMETERS = params(
    ["summary"], summary="what you did, in a few sentences",
    concerns="anything that worries you about the change or the code around it (optional)",
    deviations="where and why you departed from the instructions (optional)",
    findings="facts about the code base the planner should know (optional)",
    suggestions="follow-up work you recommend (optional)",
)


@dataclass(frozen=True)
class Attempt:
    """What one attempt works with: its run, item, lease, landing strategy, and the host's repository cache."""

    store: Store
    settings: CadreSettings
    run: Run
    item: WorkItem
    lease: LeaseHeartbeat
    landing: Landing
    cache: BareCache
    artifacts: tuple[str, ...]  # what the run's agent leaves in the worktree that is never committed

    @property
    def upstream(self) -> str:
        return f"refs/remotes/origin/{self.run.branch}"


def attempt_item(store: Store, settings: CadreSettings, run: Run, item: WorkItem, lease: LeaseHeartbeat,
                 landing: Landing) -> Outcome:
    """Carry out one attempt, step by step; an early exit returns the outcome it carries.

    A continuation item (`start_ref`: a partial item's rescue branch) starts from that branch's work,
    staged on its base, so its commit carries the earlier work and its own as one change.
    """
    attempt = Attempt(store, settings, run, item, lease, landing, repository_cache(store, settings, run),
                      artifact_patterns(preset_for(run.worker_backend, settings), settings))
    try:
        skip_if_landed(attempt)
        start = f"refs/remotes/origin/{item.start_ref}" if item.start_ref else attempt.upstream
        with worktree_slot(attempt.cache, "worker", start, owner=(item.id, item.attempt)) as worktree:
            try:
                if item.start_ref:
                    unstage_onto_merge_base(worktree, attempt.upstream)
                start_unless_paused(attempt)
                measured, summary = run_agent(attempt, worktree)
                commit_change(attempt, worktree, measured, summary)
                return hand_off(attempt, worktree, land(attempt, worktree), measured, summary)
            except AttemptExit:
                raise
            except SoftTimeLimitExceeded:
                branch = preserve_work(attempt, worktree)
                raise StoppedAtLimit(Outcome(Next.FAILED, Handoff(
                    status=HandoffStatus.PARTIAL if branch else HandoffStatus.FAILED, rescue_branch=branch,
                    attempt=item.attempt, summary="stopped at Cadre's time limit"
                    + (f"; work in progress on {branch}" if branch else "")), "time limit")) from None
            except BaseException:
                preserve_work(attempt, worktree)
                raise
    except AttemptExit as exit_:
        return exit_.outcome


def skip_if_landed(attempt: Attempt) -> None:
    """Step 1: a change already on the branch (an earlier attempt landed it) is not redone."""
    landed = landed_commit(attempt.cache.path, attempt.upstream, attempt.item.id)
    if landed is not None:
        raise AlreadyLanded(Outcome(Next.DONE, Handoff(
            status=HandoffStatus.LANDED, commit=landed, attempt=attempt.item.attempt,
            summary="already on the branch: an earlier attempt landed it")))


def start_unless_paused(attempt: Attempt) -> None:
    """Step 2: a pause that landed after the claim means the agent never starts: the item goes back, parked."""
    if attempt.store.runs.get(attempt.run.id).is_paused:
        raise PausedBeforeStart(Outcome(Next.PAUSED, Handoff(
            status=HandoffStatus.FAILED, attempt=attempt.item.attempt,
            summary="given back before its agent started: the run was paused"), "run paused",
            AttemptOutcome.INTERRUPTED))


def run_agent(attempt: Attempt, worktree: Path) -> tuple[dict, str]:
    """Step 3: the run's agent on the item; returns what it measured and its summary, or exits (its work
    rescued) if it stopped at a limit, stopped early or failed."""
    store, run, item = attempt.store, attempt.run, attempt.item
    store.events.emit(run.id, "agent_started", item_id=item.id, attempt=item.attempt)
    result = _run_backend(attempt, worktree)
    store.events.emit(run.id, "agent_finished", item_id=item.id, attempt=item.attempt, status=result.status)
    summary = clean_text(str(result.final_arguments.get("summary") or f"agent ended: {result.status}"))
    measured = dict(tokens=result.tokens, cost_usd=round(result.cost_usd, 6), attempt=item.attempt,
                    usage_reported=result.usage_reported, **handoff_notes(result.final_arguments))
    if result.status in LIMIT_STATUSES:
        reason = limit_reason(attempt.settings, result)
        branch = _rescue_wip(attempt, worktree, reason)
        raise StoppedAtLimit(Outcome(Next.FAILED, Handoff(
            status=HandoffStatus.PARTIAL if branch else HandoffStatus.FAILED, rescue_branch=branch,
            summary=f"stopped at {reason}" + (f"; work in progress on {branch} (continue from it with "
                                              f"create_task start_from)" if branch else "; nothing changed")
            + (f"\n{summary}" if summary else ""), **measured), f"stopped at {reason}"))
    if result.status == "stalled":
        raise Stalled(stalled_outcome(attempt, worktree, result.detail, measured, summary))
    if result.status in {"stopped", "failed"}:
        reason = summary if result.status == "failed" else stop_reason(store, run, item.id)
        branch = _rescue_wip(attempt, worktree, reason)
        handoff = Handoff(status=HandoffStatus.RESCUED if branch else HandoffStatus.FAILED, rescue_branch=branch,
                          summary=f"stopped: {reason}" + (f"; work in progress on {branch}" if branch else ""),
                          **measured)
        raise AgentStopped(Outcome(Next.RESUME if shutdown_requested() else Next.FAILED, handoff, reason))
    return measured, summary


def stalled_outcome(attempt: Attempt, worktree: Path, why: str, measured: dict, summary: str) -> Outcome:
    """A stalled agent: its work goes to the rescue branch, and once per stall a continuation item starts from
    there with what it did (a continuation that stalls again gets none: its planner decides)."""
    store, run, item = attempt.store, attempt.run, attempt.item
    reason = f"stalled: {why}"
    branch = _rescue_wip(attempt, worktree, reason)
    continuation = None
    if branch and not item.continues:
        continuation = WorkItem(
            id=new_id("item"), run_id=run.id, cycle=item.cycle, node_id=item.node_id, round=item.round,
            title=one_line(f"continue: {item.title}", 200), scope=item.scope, acceptance=item.acceptance,
            instructions=f"{item.instructions}\n\nAn earlier agent on this task stalled ({why}). Its work so far is "
                         f"staged in your working copy; what it said: {summary}", priority=item.priority,
            start_ref=branch, continues=item.id)
        if store.items.add_continuation(item, continuation):
            dispatch_work_item(continuation)
        else:
            continuation = None
    store.events.emit(run.id, "stalled", item_id=item.id, attempt=item.attempt, reason=why, rescue_branch=branch,
                      continuation=continuation.id if continuation else None)
    handoff = Handoff(status=HandoffStatus.PARTIAL if branch else HandoffStatus.FAILED, rescue_branch=branch,
                      summary=f"{reason}" + (f"; work in progress on {branch}" if branch else "; nothing changed")
                      + (f"; continued by {continuation.id}" if continuation else "") + f"\n{summary}", **measured)
    return Outcome(Next.STALLED, handoff, reason)


def commit_change(attempt: Attempt, worktree: Path, measured: dict, summary: str) -> None:
    """Step 4: commit what the agent changed, safely; exits if there is nothing that may land."""
    committed = commit_attempt(attempt.settings, worktree, commit_message(attempt.item, summary), attempt.artifacts)
    if not committed.may_land:
        raise NothingToLand(_refused_or_unchanged(attempt, worktree, measured, summary, committed))
    guard_protected(attempt, worktree, measured, summary)


def guard_protected(attempt: Attempt, worktree: Path, measured: dict, summary: str) -> None:
    """A commit that adds, changes or deletes a protected path (`--protect`) never lands, unless its item was
    planned to (`--protect-allow-planned`): it goes to the rescue branch and the item ends `refused`."""
    run, item = attempt.run, attempt.item
    if not run.protect or item.may_change_protected:
        return
    touched = touched_protected(diff_stats(worktree, "HEAD~1", "HEAD").files, run.protect)
    if not touched:
        return
    reason = f"refused: it changed protected paths ({', '.join(touched[:10])})"
    branch = rescue(worktree, attempt.cache, item.id, item.attempt, reason).rescue_branch
    attempt.store.events.emit(run.id, "refused", item_id=item.id, attempt=item.attempt, paths=touched[:50],
                              rescue_branch=branch)
    raise TouchedProtected(Outcome(Next.REFUSED, Handoff(
        status=HandoffStatus.RESCUED, rescue_branch=branch, summary=f"{summary}\n[not landed, {reason}: this run "
        f"protects {', '.join(run.protect)}; the work is kept on {branch}]", **measured), reason))


def land(attempt: Attempt, worktree: Path) -> LandingResult:
    """Step 5: land the commit through the run's landing strategy (its conflicts resolved by the agent)."""
    store, run, item = attempt.store, attempt.run, attempt.item
    resolver = conflict_resolver(store, attempt.settings, run, item, worktree)
    landing = attempt.landing.land(worktree, attempt.cache, run.branch, item.id, item.attempt,
                                   attempt.lease.still_holds, resolver)
    store.events.emit(run.id, "pushed" if landing.landed else "rescued", item_id=item.id, attempt=item.attempt,
                      commit=landing.commit, retries=landing.retries, rescue_branch=landing.rescue_branch,
                      reason=landing.reason, conflicted_paths=landing.conflicted_paths)
    return landing


def hand_off(attempt: Attempt, worktree: Path, landing: LandingResult, measured: dict, summary: str) -> Outcome:
    """Step 6: the handoff of a landed (or rescued) commit. A stale attempt (its lease lapsed: frozen, cut
    off) hands its item to a new attempt, as the reaper would."""
    stats = diff_stats(worktree, f"{landing.commit}~1", landing.commit)
    if not landing.landed:
        summary = f"{summary}\n[not landed: {landing.reason}; commit kept on {landing.rescue_branch}]"
    handoff = Handoff(
        status=HandoffStatus.LANDED if landing.landed else HandoffStatus.RESCUED, summary=summary,
        commit=landing.commit if landing.landed else None, rescue_branch=landing.rescue_branch,
        files_changed=stats.files, insertions=stats.insertions, deletions=stats.deletions,
        conflicted_paths=landing.conflicted_paths, **measured,
    )
    if landing.stale:
        return Outcome(Next.RETRY, handoff, landing.reason, attempt_outcome=AttemptOutcome.LOST)
    return Outcome(Next.DONE if landing.landed else Next.FAILED, handoff, landing.reason)


def preserve_work(attempt: Attempt, worktree: Path) -> str | None:
    """Commit anything uncommitted and push unlanded commits to the rescue branch; returns its name, if any.

    Called before a worktree is given up on an error path: a slot reset must never destroy work.
    """
    item = attempt.item
    try:
        commit_attempt(attempt.settings, worktree, wip_message(item), attempt.artifacts)
        if commits_between(worktree, attempt.upstream, "HEAD"):
            return rescue(worktree, attempt.cache, item.id, item.attempt, "attempt ended by an error").rescue_branch
    except Exception:  # preserving is best effort on an error path: log it, keep the original error
        log.exception("item %s attempt %s: could not preserve work in progress", item.id, item.attempt)
    return None


def limit_reason(settings: CadreSettings, result: AgentResult) -> str:
    """Which limit an agent stopped at."""
    if result.status == "step_limit":
        return f"its step limit ({result.steps} steps)"
    if result.status == "cost_limit":
        return f"the item cost budget (${settings.budgets.item_max_cost_usd:g})"
    return result.detail or "its limit"


def stop_reason(store: Store, run: Run, item_id: str) -> str:
    """Why an agent stopped before finishing (a shutdown, an operator's cancel, or its run ended)."""
    if shutdown_requested():
        return "worker shutting down"
    if store.items.get(item_id).cancel_requested:
        return "cancelled by an operator (cadre cancel)"
    current = store.runs.get(run.id)
    if current.is_over:
        return f"run ended {current.status.value}" + (f": {current.reason}" if current.reason else "")
    return "agent stopped"


def _refused_or_unchanged(attempt: Attempt, worktree: Path, measured: dict, summary: str,
                          committed: CommittedWork) -> Outcome:
    """Nothing to land: the agent changed nothing, or its change may not land (too large, risky attributes):
    what was safe to keep goes to the rescue branch, and the handoff says what was refused and left out."""
    if not committed.problems:
        notes = f"\n{committed.notes()}" if committed.removed else ""
        return Outcome(Next.DONE, Handoff(status=HandoffStatus.NO_CHANGE, **measured,
                                          summary=f"{summary}{notes}\n[{NOTHING_TO_COMMIT}]"))
    item = attempt.item
    reason = "refused: " + "; ".join(committed.problems)
    branch = rescue(worktree, attempt.cache, item.id, item.attempt, reason).rescue_branch if committed.sha else None
    handoff = Handoff(status=HandoffStatus.RESCUED if branch else HandoffStatus.FAILED, rescue_branch=branch,
                      summary=f"{summary}\n[not landed, {committed.notes()}"
                              + (f"\nwhat was safe to keep is on {branch}]" if branch else "]"), **measured)
    return Outcome(Next.FAILED, handoff, reason)


def _rescue_wip(attempt: Attempt, worktree: Path, reason: str) -> str | None:
    """Commit the work in progress and push it to the attempt's rescue branch; its name, or None if no change."""
    item = attempt.item
    wip = commit_attempt(attempt.settings, worktree, wip_message(item, reason), attempt.artifacts)
    return rescue(worktree, attempt.cache, item.id, item.attempt, reason).rescue_branch if wip.sha else None


def _run_backend(attempt: Attempt, worktree: Path) -> AgentResult:
    """The run's worker backend on this item: the builtin loop, or an external agent program."""
    store, settings, run, item = attempt.store, attempt.settings, attempt.run, attempt.item
    variables = dict(goal=run.goal, branch=run.branch, title=item.title, instructions=item.instructions,
                     scope=item.scope, acceptance=item.acceptance, continued_from=item.start_ref or "",
                     guidance=guidance_for(store, run.id, "workers"))
    preset = preset_for(run.worker_backend, settings)
    if preset is not None:
        check_backend(run.worker_backend, settings)
        return run_external_agent(store, settings, run, item, worktree, preset, variables)
    tools = workspace_tools(settings, worktree)
    watch = StallWatch(lambda: worktree_fingerprint(worktree), settings.stall_repeats, settings.stall_idle_steps)
    finish = Tool("finish", "End the task with your handoff to the planner that asked for it.", HANDOFF_PARAMETERS,
                  lambda _a: "finished", terminal=True)
    prompts = run_prompts(settings, run, worktree)
    return run_role_agent(store, settings, "worker", run.id, f"worker-{item.id}-{item.attempt}",
                          prompts.render("worker", "system", **variables),
                          prompts.render("worker", "task", **variables),
                          tools.explore_tools() + tools.edit_tools() + [finish],
                          scopes={"cycle": str(item.cycle), "node": item.node_id, "item": item.id},
                          max_cost_usd=settings.budgets.item_max_cost_usd, stall_watch=watch)
