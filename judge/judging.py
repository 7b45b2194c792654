"""Closing a cycle: checks, the judge agent's verdict, then the run ends or the next cycle starts."""

from __future__ import annotations

import logging
from enum import Enum

from orchestrator.agent.loop import Tool
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import run_prompts, run_role_agent, workspace_tools
from orchestrator.flow.checks import CheckResult, check_branch_head, check_history, not_found_line, trend
from orchestrator.flow.cycles import start_cycle
from orchestrator.flow.steering import drain_if_idle, guidance_for
from orchestrator.flow.repository import repository_cache
from orchestrator.git.workspace import worktree_slot
from orchestrator.state.keys import Keys
from orchestrator.state.locks import KeptLock
from orchestrator.state.models import CycleStatus, Run, RunStatus, Verdict
from orchestrator.state.store import Store

log = logging.getLogger(__name__)

VERDICT_PARAMETERS = {
    "type": "object",
    "properties": {
        "done": {"type": "boolean", "description": "true only if the goal is completely met"},
        "reason": {"type": "string", "description": "why"},
        "next_focus": {"type": "string", "description": "what the next cycle should do, if not done"},
    },
    "required": ["done", "reason"],
}


def as_bool(value) -> bool:
    """A model's `done` argument as a boolean; anything unclear is False (the judge fails closed)."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in {"true", "yes", "1"}


class CycleClosed(Enum):
    """What judging a cycle led to."""

    DONE = "done"  # the goal is met: the run ends done
    NEXT_CYCLE = "next_cycle"  # not done: a fresh cycle starts
    MAX_CYCLES = "max_cycles"  # not done, and no cycle is left
    CHECK_CANNOT_RUN = "check_cannot_run"  # the check command is not in the sandbox: the run fails
    RUN_OVER = "run_over"  # the run had ended (stopped, out of budget) before or while judging
    DROPPED = "dropped"  # a duplicate delivery, or another judge holds (or closed) the cycle


def judge_cycle(store: Store, settings: CadreSettings, run_id: str, number: int) -> CycleClosed:
    """Judge cycle `number` once: record its verdict, then end the run or start the next cycle.

    The judge holds a lease on the cycle while it works (a second delivery meanwhile is dropped); if
    its host dies, the lease lapses and the tick sends the cycle to another judge.
    """
    cycle = store.cycles.get(run_id, number)
    if cycle.status is not CycleStatus.JUDGING:
        log.info("run %s cycle %s is %s; judge delivery dropped", run_id, number, cycle.status)
        return CycleClosed.DROPPED
    lease = KeptLock(store.redis, Keys.judge_lease(run_id, number), settings.lease_seconds)
    if not lease.acquire():
        store.events.emit(run_id, "delivery_dropped", cycle=number, reason="another judge holds the cycle")
        return CycleClosed.DROPPED
    try:
        return _judge(store, settings, run_id, number)
    finally:
        lease.release()
        drain_if_idle(store, run_id)


def _judge(store: Store, settings: CadreSettings, run_id: str, number: int) -> CycleClosed:
    """The steps, in order: the run still going? the check and the judge agent's verdict, the cycle closed
    with it (once), then the run ends or the next cycle starts."""
    run = store.runs.get(run_id)
    if run.is_over:
        store.cycles.close(run_id, number, Verdict(done=False, reason=f"run already {run.status}"))
        return CycleClosed.RUN_OVER
    verdict, check = decide(store, settings, run, number)
    if not store.cycles.close(run_id, number, verdict):
        return CycleClosed.DROPPED
    store.events.emit(run_id, "verdict", cycle=number, **verdict.model_dump())
    if check.could_not_run:  # no further cycle can make a command the sandbox cannot find pass: say so now
        store.runs.end(run_id, RunStatus.FAILED, f"the check command {check.command!r} cannot run in the agent sandbox "
                       f"({not_found_line(check.output)}): put the program on the workers' PATH, or make its folder "
                       "readable with CADRE_SANDBOX_READABLE")
        return CycleClosed.CHECK_CANNOT_RUN
    if verdict.done:
        store.runs.end(run_id, RunStatus.DONE, verdict.reason)
        return CycleClosed.DONE
    if number >= run.max_cycles:
        store.runs.end(run_id, RunStatus.MAX_CYCLES, f"goal not met after {number} cycles: {verdict.reason}")
        return CycleClosed.MAX_CYCLES
    if store.runs.get(run_id).is_over:
        return CycleClosed.RUN_OVER
    return CycleClosed.NEXT_CYCLE if start_cycle(store, run_id, number) else CycleClosed.DROPPED


def decide(store: Store, settings: CadreSettings, run: Run, number: int) -> tuple[Verdict, CheckResult]:
    """Run the check and the judge agent on the branch head; an unreadable verdict is "not done"."""
    items = store.items.many(store.cycles.item_ids(run.id, number))
    handoffs = [handoff_view(i) for i in items]
    cache = repository_cache(store, settings, run)
    with worktree_slot(cache, "judge", f"refs/remotes/origin/{run.branch}") as head:
        check = check_branch_head(store, settings, run, number, head, "judge")
        verdict_tool = Tool("verdict", "Give the verdict on the cycle: is the goal met?", VERDICT_PARAMETERS,
                            lambda _a: "verdict recorded", terminal=True)
        tools = workspace_tools(settings, head).explore_tools() + [verdict_tool]
        variables = dict(goal=run.goal, branch=run.branch, cycle=number, max_cycles=run.max_cycles, items=handoffs,
                         check_command=check.command or "", check_passed=bool(check.passed),
                         check_output=check.output, check_trend=trend(check_history(store, run.id)),
                         guidance=guidance_for(store, run.id, "planners"))
        prompts = run_prompts(settings, run, head)
        result = run_role_agent(store, settings, "judge", run.id, f"judge-cycle-{number}",
                                prompts.render("judge", "system", **variables), prompts.render("judge", "task", **variables),
                                tools, scopes={"cycle": str(number)})
    return verdict_from(result.final_arguments if result.status == "finished" else None, result.status, check), check


def handoff_view(item) -> dict:
    """What the judge and planners see of one item's handoff."""
    handoff = item.handoff
    view = {"id": item.id, "title": item.title, "status": item.status.value, "commit": None, "summary": "",
            "concerns": "", "findings": "", "rescue_branch": None}
    if handoff is not None:
        view.update(commit=handoff.commit, summary=handoff.summary, concerns=handoff.concerns,
                    findings=handoff.findings, rescue_branch=handoff.rescue_branch)
    return view


def verdict_from(arguments: dict | None, agent_status: str, check: CheckResult) -> Verdict:
    """The verdict: the judge's word, overruled to "not done" when the check failed or no verdict came."""
    if arguments is None:
        return Verdict(done=False, reason=f"the judge gave no verdict ({agent_status})",
                       check_passed=check.passed, check_output=check.output)
    done = as_bool(arguments.get("done"))
    reason = str(arguments.get("reason", ""))
    if done and check.passed is False:
        done, reason = False, f"check command failed; {reason}"
    return Verdict(done=done, reason=reason, next_focus=str(arguments.get("next_focus", "") or ""),
                   check_passed=check.passed, check_output=check.output)
