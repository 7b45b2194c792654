"""Steering a live run: what `cadre pause`, `resume`, `drain`, `guide`, `budget`, `retry`, `cancel`, `approve`
and `reject` do. Each returns one line saying what changed, raises SteeringError (one line) on bad input, and
is recorded in the run's events with who did it (user@host).

Pausing stops nothing that runs: claims, planner rounds, judging and new cycles are refused while the run is
paused (each in its own transaction with the run's record, `orchestrator.state`), and what was delivered
meanwhile is parked. Resuming sends the parked work again, exactly once, and lets the cycle go on.
"""

from __future__ import annotations

import getpass
import socket
import time

from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.flow.cycles import close_cycle, item_settled, start_cycle
from orchestrator.queues.dispatch import dispatch_planner, dispatch_work_item
from orchestrator.state.models import (GUIDANCE_AUDIENCES, SETTLED_NODE_STATUSES, CycleStatus,
                                       Guidance, Handoff, HandoffStatus, ItemStatus, NodeStatus, Run, RunStatus)
from orchestrator.state.records import UnknownRecord
from orchestrator.state.store import Store

MAX_GUIDANCE_CHARS = 20_000
# The `cadre budget` option of each limit of a run.
LIMIT_OPTIONS = {"max_cost_usd": "--max-cost", "max_tokens": "--max-tokens", "max_hours": "--max-hours",
                 "max_cycles": "--max-cycles"}


class SteeringError(ValueError):
    """A steering command that cannot be carried out (the message is one line, for the user)."""


def operator() -> str:
    """Who steers: `user@host` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def live_run(store: Store, run_id: str) -> Run:
    """The run `run_id` if it has not ended; SteeringError otherwise."""
    try:
        run = store.runs.get(run_id)
    except UnknownRecord as exc:
        raise SteeringError(str(exc)) from None
    if run.is_over:
        raise SteeringError(f"run {run_id} has ended ({run.status.value}): it cannot be steered")
    return run


def guidance_for(store: Store, run_id: str, audience: str) -> list[dict[str, str]]:
    """The run's guidance that `audience` (planners, which include the judge, or workers) sees, oldest first,
    with its time, for a prompt."""
    return [{"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(g.at)), "text": g.text, "by": g.by}
            for g in store.steering.guidance(run_id) if g.reaches(audience)]


def pause_run(store: Store, run_id: str, by: str) -> str:
    run = live_run(store, run_id)
    if store.steering.set_status(run_id, RunStatus.PAUSED, frozenset({RunStatus.RUNNING})) is None:
        raise SteeringError(f"run {run_id} is {store.runs.get(run_id).status.value}, not running")
    store.events.emit(run.id, "run_paused", by=by)
    return f"run {run_id} paused: nothing new starts; running attempts finish and land"


def resume_run(store: Store, run_id: str, by: str) -> str:
    run = live_run(store, run_id)
    if store.steering.set_status(run_id, RunStatus.RUNNING, frozenset({RunStatus.PAUSED, RunStatus.DRAINING})) is None:
        raise SteeringError(f"run {run_id} is {store.runs.get(run_id).status.value}, not paused or draining")
    store.events.emit(run.id, "run_resumed", by=by, was=run.status.value)
    items, rounds = send_parked_work(store, run_id)
    continue_cycle(store, run_id)
    return f"run {run_id} running again: {items} parked items and {rounds} planner rounds sent again"


def send_parked_work(store: Store, run_id: str) -> tuple[int, int]:
    """Dispatch the run's parked items and planner rounds, each exactly once (whoever unparks it sends it)."""
    items = rounds = 0
    for item in store.items.many(store.items.ids_of_run(run_id)):
        if item.parked and (unparked := store.steering.unpark_item(item.id)) is not None:
            dispatch_work_item(unparked)
            items += 1
    for node in store.nodes.many(store.nodes.ids_of_run(run_id)):
        if node.parked and (unparked := store.steering.unpark_node(node.id)) is not None:
            dispatch_planner(unparked)
            rounds += 1
    return items, rounds


def continue_cycle(store: Store, run_id: str, closed_before: float | None = None) -> None:
    """What a pause held back at the cycle's end: a settled root's cycle goes to the judge, and a cycle closed
    "not done" (before `closed_before`, if given: its judge has surely finished) gets its successor. Both are
    idempotent; the tick does the same."""
    run = store.runs.get(run_id)
    if run.status is not RunStatus.RUNNING:
        return
    cycle = store.cycles.get(run_id, run.cycle)
    if cycle.status is CycleStatus.PLANNING:
        if store.nodes.get(cycle.root_node_id).status in SETTLED_NODE_STATUSES:
            close_cycle(store, run_id, run.cycle)
    elif (cycle.status is CycleStatus.CLOSED and cycle.verdict is not None and not cycle.verdict.done
          and run.cycle < run.max_cycles and (closed_before is None or (cycle.closed_at or 0) < closed_before)):
        start_cycle(store, run_id, run.cycle)


def drain_run(store: Store, run_id: str, by: str) -> str:
    run = live_run(store, run_id)
    if store.steering.set_status(run_id, RunStatus.DRAINING, frozenset({RunStatus.RUNNING, RunStatus.PAUSED})) is None:
        raise SteeringError(f"run {run_id} is already {store.runs.get(run_id).status.value}")
    store.events.emit(run.id, "run_draining", by=by)
    if drain_if_idle(store, run_id):
        return f"run {run_id} drained: nothing was running; it ended stopped"
    return f"run {run_id} draining: nothing new starts; it ends stopped once what runs has finished"


def drain_if_idle(store: Store, run_id: str) -> bool:
    """End a draining run `stopped` once nothing of it runs (no attempt, planner round or judge); its waiting
    items are cancelled (none had started). True if the run ended now."""
    run = store.runs.get(run_id)
    if run.status is not RunStatus.DRAINING:
        return False
    items = store.items.many(store.items.ids_of_run(run_id))
    if any(i.status is ItemStatus.RUNNING for i in items):
        return False
    if any(n.status is NodeStatus.PLANNING for n in store.nodes.many(store.nodes.ids_of_run(run_id))):
        return False
    if store.cycles.get(run_id, run.cycle).status is CycleStatus.JUDGING:
        return False
    for item in items:
        if item.status in (ItemStatus.QUEUED, ItemStatus.AWAITING_APPROVAL):
            store.items.drop(item.id, Handoff(status=HandoffStatus.FAILED, attempt=item.attempt,
                                              summary="not started: the run was drained"), ItemStatus.CANCELLED)
    return store.runs.end(run_id, RunStatus.STOPPED, "drained: every running attempt finished")


def add_guidance(store: Store, run_id: str, text: str, to: str, by: str) -> str:
    run = live_run(store, run_id)
    text = text.strip()
    if not text:
        raise SteeringError("the guidance is empty: say what the agents should know")
    if len(text) > MAX_GUIDANCE_CHARS:
        raise SteeringError(f"the guidance is {len(text)} characters long; at most {MAX_GUIDANCE_CHARS}")
    if to not in GUIDANCE_AUDIENCES:
        raise SteeringError(f"--to must be one of {', '.join(GUIDANCE_AUDIENCES)}, not {to!r}")
    guidance = Guidance(text=text, by=by, to=to)
    store.steering.add_guidance(run.id, guidance)
    store.events.emit(run.id, "guidance", by=by, to=to, chars=len(text))
    seen_by = {"planners": "planners and the judge", "workers": "workers", "all": "planners, the judge and workers"}
    return f"guidance added to run {run_id}: every {seen_by[to]} starting from now sees it"


def change_budget(store: Store, run_id: str, limits: dict[str, float | int | None], warning_fraction: float,
                  by: str) -> str:
    """Set the run's limits given in `limits` (None: left as it is); a limit below what is spent ends the run now,
    exactly as if it had been reached."""
    run = live_run(store, run_id)
    given = {name: value for name, value in limits.items() if value is not None}
    if not given:
        raise SteeringError("give at least one of --max-cost, --max-tokens, --max-hours, --max-cycles")
    for name, value in given.items():
        if value <= 0:
            raise SteeringError(f"{LIMIT_OPTIONS[name]} must be greater than 0")
    if store.steering.set_limits(run.id, given) is None:
        raise SteeringError(f"run {run_id} has ended: its budget cannot change")
    store.events.emit(run.id, "budget_changed", by=by, **given)
    changed = ", ".join(f"{name} {run.model_dump()[name]} → {value}" for name, value in given.items())
    if enforce_run_budget(store, run.id, warning_fraction):
        ended = store.runs.get(run.id)
        return f"run {run_id}: {changed}; it ended {ended.status.value}: {ended.reason}"
    return f"run {run_id}: {changed}"


def retry_item(store: Store, item_id: str, by: str) -> str:
    item = _item(store, item_id)
    live_run(store, item.run_id)
    retried = store.steering.retry(item)
    if retried is None:
        raise SteeringError(f"item {item_id} is {store.items.get(item_id).status.value}: only a failed or "
                            "cancelled item can be retried")
    store.events.emit(item.run_id, "item_retried", item_id=item_id, by=by)
    if retried.parked:
        return f"item {item_id} queued again; the run is paused: it starts when the run resumes"
    dispatch_work_item(retried)
    return f"item {item_id} queued again for a new attempt"


def cancel_item(store: Store, item_id: str, max_rounds: int, by: str) -> str:
    item = _item(store, item_id)
    live_run(store, item.run_id)
    dropped = store.items.drop(item_id, Handoff(status=HandoffStatus.FAILED, attempt=item.attempt,
                                                summary=f"cancelled by {by} before it started"), ItemStatus.CANCELLED)
    if dropped is not None:
        store.events.emit(item.run_id, "item_cancelled", item_id=item_id, by=by)
        item_settled(store, dropped, max_rounds)
        return f"item {item_id} cancelled before it started"
    if store.steering.request_cancel(item_id) is not None:
        store.events.emit(item.run_id, "item_cancel_requested", item_id=item_id, by=by)
        return (f"item {item_id} is running: its agent stops at its next step, its work goes to a rescue branch, "
                "and it ends cancelled")
    raise SteeringError(f"item {item_id} is {store.items.get(item_id).status.value}: only a queued, awaiting or "
                        "running item can be cancelled")


def approve_items(store: Store, run_id: str, item_ids: list[str], by: str) -> str:
    """Queue the run's items awaiting approval: those named, or all of them."""
    run = live_run(store, run_id)
    waiting = _awaiting(store, run, item_ids)
    queued = []
    for item in waiting:
        approved = store.steering.approve(item)
        if approved is not None:
            queued.append(approved.id)
            if not approved.parked:
                dispatch_work_item(approved)
    store.events.emit(run.id, "items_approved", item_ids=queued, by=by)
    return f"run {run_id}: {len(queued)} items approved and queued" + (" (the run is paused: they start when it "
                                                                       "resumes)" if run.is_paused else "")


def reject_items(store: Store, run_id: str, item_ids: list[str], reason: str, max_rounds: int, by: str) -> str:
    """Drop the named items awaiting approval; their planner sees why in their handoffs."""
    run = live_run(store, run_id)
    if not item_ids:
        raise SteeringError("name the items to reject")
    if not reason.strip():
        raise SteeringError("--reason is empty: say why, the planner reads it")
    rejected = []
    for item in _awaiting(store, run, item_ids):
        dropped = store.items.drop(item.id, Handoff(status=HandoffStatus.FAILED, attempt=item.attempt,
                                                    summary=f"rejected by {by}: {reason.strip()}"),
                                   ItemStatus.CANCELLED)
        if dropped is not None:
            rejected.append(item.id)
            item_settled(store, dropped, max_rounds)
    store.events.emit(run.id, "items_rejected", item_ids=rejected, reason=reason.strip(), by=by)
    return f"run {run_id}: {len(rejected)} items rejected; their planner is told why"


def _item(store: Store, item_id: str):
    try:
        return store.items.get(item_id)
    except UnknownRecord as exc:
        raise SteeringError(str(exc)) from None


def _awaiting(store: Store, run: Run, item_ids: list[str]) -> list:
    """The run's items awaiting approval: those named (each must be one), or all of them."""
    items = store.items.many(store.items.ids_of_run(run.id))
    if not item_ids:
        return [i for i in items if i.status is ItemStatus.AWAITING_APPROVAL]
    by_id = {i.id: i for i in items}
    for item_id in item_ids:
        if item_id not in by_id:
            raise SteeringError(f"run {run.id} has no work item {item_id}")
        if by_id[item_id].status is not ItemStatus.AWAITING_APPROVAL:
            raise SteeringError(f"item {item_id} is {by_id[item_id].status.value}, not awaiting approval")
    return [by_id[i] for i in item_ids]

