"""Starting, stopping and describing runs (what the CLI's run, stop and status commands do)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.agent.backends import BackendUnavailable, preset_for
from orchestrator.config.secrets import redact_url
from orchestrator.config.settings import ROLES, CadreSettings
from orchestrator.flow.cycles import new_cycle
from orchestrator.flow.efficiency import run_efficiency
from orchestrator.queues.dispatch import dispatch_planner
from orchestrator.state.models import Run, RunStatus, WorkItem, new_id, now
from orchestrator.state.records import UnknownRecord
from orchestrator.state.store import Store


class RunRequestError(ValueError):
    """A run request that cannot be started (the message is one line, for the user)."""


def validate_run_request(settings: CadreSettings, repo: str, goal: str, branch: str, max_cycles: int) -> str:
    """Check a run request before anything is written; returns the branch head sha."""
    if not goal.strip():
        raise RunRequestError("the goal is empty: say what the agents should achieve")
    if not branch.strip():
        raise RunRequestError("the branch name is empty")
    if max_cycles < 1:
        raise RunRequestError("--max-cycles must be at least 1")
    for role in ROLES:
        settings.model_for(role)
    from orchestrator.git.repo import remote_branch_head
    from orchestrator.git.runner import GitError

    try:
        return remote_branch_head(repo, branch)
    except GitError as exc:
        raise RunRequestError(str(exc)) from None


@dataclass(frozen=True)
class Budgets:
    """A run's budgets; None means the settings' default (and None there means unlimited)."""

    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_hours: float | None = None


@dataclass(frozen=True)
class RunRequest:
    """What `cadre run` asks for; None means the settings' default."""

    repo: str
    goal: str
    branch: str = "main"
    budgets: Budgets = Budgets()
    max_cycles: int | None = None
    backend: str | None = None
    approve_plans: bool = False
    protect: tuple[str, ...] = ()  # added to the settings' CADRE_PROTECT
    protect_allow_planned: bool = False
    check_command: str | None = None


def start_run(store: Store, settings: CadreSettings, request: RunRequest) -> Run:
    """Validate, store a new run with cycle 1 and its root planner, and enqueue that planner."""
    cycles = request.max_cycles if request.max_cycles is not None else settings.max_cycles
    backend = request.backend or settings.worker_backend
    try:
        preset_for(backend, settings)
    except BackendUnavailable as exc:
        raise RunRequestError(str(exc)) from None
    budgets = request.budgets
    for name, value in (("--max-cost", budgets.max_cost_usd), ("--max-tokens", budgets.max_tokens),
                        ("--max-hours", budgets.max_hours)):
        if value is not None and value <= 0:
            raise RunRequestError(f"{name} must be greater than 0")
    head = validate_run_request(settings, request.repo, request.goal, request.branch, cycles)
    run = Run(id=new_id("run"), repo=redact_url(request.repo), branch=request.branch, goal=request.goal.strip(),
              max_cycles=cycles, max_cost_usd=budgets.max_cost_usd or settings.budgets.max_cost_usd,
              max_tokens=budgets.max_tokens or settings.budgets.max_tokens,
              max_hours=budgets.max_hours or settings.budgets.max_hours,
              worker_backend=backend, check_command=(request.check_command or settings.check_command or None),
              start_commit=head, approve_plans=request.approve_plans,
              protect=sorted({*settings.protect, *(g.strip() for g in request.protect if g.strip())}),
              protect_allow_planned=request.protect_allow_planned)
    cycle, root = new_cycle(run.id, 1)
    store.runs.create(run, cycle, root, repo_url=request.repo)
    store.events.emit(run.id, "run_created", repo=run.repo, branch=run.branch, head=head,
                      max_cycles=cycles)
    store.events.emit(run.id, "cycle_started", cycle=1, root_node_id=root.id)
    dispatch_planner(root)
    return run


def stop_run(store: Store, run_id: str) -> bool:
    """End a running run as `stopped`; agents stop at their next step. False if it had already ended."""
    store.runs.get(run_id)
    return store.runs.end(run_id, RunStatus.STOPPED, "stopped by user")


def node_tree(store: Store, run_id: str, items: list, usage: dict[str, float]) -> list[dict]:
    """Every planner node of the run with its children's ids and counts of its items by state."""
    by_node: dict[str, list] = {}
    for item in items:
        by_node.setdefault(item.node_id, []).append(item)
    tree = []
    for node in store.nodes.many(store.nodes.ids_of_run(run_id)):
        own = by_node.get(node.id, [])
        counts: dict[str, int] = {}
        for item in own:
            counts[item.status.value] = counts.get(item.status.value, 0) + 1
        tree.append({"id": node.id, "parent_id": node.parent_id, "cycle": node.cycle, "depth": node.depth,
                     "area": node.area, "status": node.status.value, "round": node.round,
                     "items": [i.id for i in own], "item_counts": counts, "summary": node.summary,
                     "tokens": int(usage.get(f"node:{node.id}:tokens", 0)),
                     "cost_usd": round(usage.get(f"node:{node.id}:cost_usd", 0.0), 6)})
    return tree


def budget_view(run: Run, usage: dict[str, float]) -> dict:
    """The run's current limits (an operator may have changed them) and what it has spent of each."""
    return {"max_cost_usd": run.max_cost_usd, "max_tokens": run.max_tokens, "max_hours": run.max_hours,
            "max_cycles": run.max_cycles,
            "spent": {"cost_usd": round(usage.get("cost_usd", 0.0), 6), "tokens": int(usage.get("tokens", 0)),
                      "hours": round(((run.ended_at or now()) - run.created_at) / 3600, 4), "cycles": run.cycle}}


def item_view(item: WorkItem) -> dict:
    """One work item in the status JSON, with its attempts (who ran each: host, Celery hostname, pid)."""
    return {
        "id": item.id, "title": item.title, "status": item.status.value, "cycle": item.cycle,
        "attempt": item.attempt, "commit": item.handoff.commit if item.handoff else None,
        "handoff": item.handoff.status.value if item.handoff else None,
        "rescue_branch": item.handoff.rescue_branch if item.handoff else None,
        "parked": item.parked, "cancel_requested": item.cancel_requested,
        "attempts": [{"number": a.number, "host": a.host, "celery_hostname": a.celery_hostname,
                      "node": a.celery_hostname,  # the name before 0.2; kept for one release, to be removed
                      "pid": a.pid, "start": a.started_at, "end": a.ended_at,
                      "outcome": a.outcome.value if a.outcome else None} for a in item.attempts],
    }


def run_status(store: Store, run_id: str) -> dict:
    """The run as the public status JSON: id, status, cycle, items, cost_usd, tokens and more."""
    run = store.runs.get(run_id)
    usage = store.usage.totals(run_id)
    items = store.items.many(store.items.ids_of_run(run_id))
    item_views = [item_view(item) for item in items]
    cycles = []
    for number in range(1, run.cycle + 1):
        try:
            cycle = store.cycles.get(run_id, number)
        except UnknownRecord:
            continue
        cycles.append({
            "number": cycle.number, "status": cycle.status.value,
            "verdict": cycle.verdict.model_dump() if cycle.verdict else None,
        })
    return {
        "id": run.id,
        "status": run.status.value,
        "reason": run.reason,
        "repo": run.repo,
        "branch": run.branch,
        "goal": run.goal,
        "cycle": run.cycle,
        "max_cycles": run.max_cycles,
        "created_at": run.created_at,
        "ended_at": run.ended_at,
        "items": item_views,
        "tasks": item_views,  # the name before 0.2; kept for one release, to be removed
        "cycles": cycles,
        "nodes": node_tree(store, run_id, items, usage),
        "cost_usd": round(usage.get("cost_usd", 0.0), 6),
        "tokens": int(usage.get("tokens", 0)),
        "usage_by_role": {
            role: {"tokens": int(usage.get(f"{role}:tokens", 0)), "cost_usd": round(usage.get(f"{role}:cost_usd", 0.0), 6)}
            for role in ROLES if f"{role}:tokens" in usage
        },
        "usage_unreported_calls": int(usage.get("unreported_calls", 0)),
        "budgets": {"max_cost_usd": run.max_cost_usd, "max_tokens": run.max_tokens, "max_hours": run.max_hours},
        "budget": budget_view(run, usage),
        "efficiency": run_efficiency(store, run, items, usage),
        "paused": run.is_paused,
        "approve_plans": run.approve_plans,
        "protect": run.protect,
        "protect_allow_planned": run.protect_allow_planned,
        "guidance": [g.model_dump(include={"at", "text", "by", "to"}) for g in store.steering.guidance(run_id)],
        "worker_backend": run.worker_backend,
    }
