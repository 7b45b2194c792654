"""How good a run was, from its records: landings per hour, what a landed item cost, how much was wasted,
conflicts, reworks, rescues, verdicts and checks, and how long an item took to land. Every figure is counted
from the run's items, events, usage counters and checks; none is estimated.

- A landed item is a `done` item with a commit on the branch.
- Wasted tokens and cost: everything worker agents spent on an item except the landed attempt's own agent
  run, that is attempts that failed, stalled, were refused, lost or cancelled, and conflict-resolution turns.
  Planner and judge use is overhead, not waste; the share is of the run's whole use.
- Reworks: attempts beyond each item's first. Rescues: distinct rescue branches work was kept on.
"""

from __future__ import annotations

import math

from orchestrator.flow.checks import check_history, trend
from orchestrator.state.models import ItemStatus, Run, WorkItem, now
from orchestrator.state.store import Store

RESCUE_EVENTS = frozenset({"rescued", "refused", "stalled", "item_requeued", "handoff"})


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def landed(item: WorkItem) -> bool:
    return item.status is ItemStatus.DONE and item.handoff is not None and item.handoff.commit is not None


def figures(items: list[WorkItem], usage: dict[str, float], tokens: float, cost: float, hours: float,
            conflicts: int, rescues: int) -> dict:
    """The efficiency block of a set of items (a run, or one cycle), with the totals they are measured against."""
    landings = [i for i in items if landed(i)]
    spent = {i.id: (usage.get(f"item:{i.id}:tokens", 0.0), usage.get(f"item:{i.id}:cost_usd", 0.0)) for i in items}
    kept = {i.id: (i.handoff.tokens, i.handoff.cost_usd) for i in landings}
    wasted_tokens = sum(max(0.0, t - kept.get(k, (0, 0.0))[0]) for k, (t, _c) in spent.items())
    wasted_cost = sum(max(0.0, c - kept.get(k, (0, 0.0))[1]) for k, (_t, c) in spent.items())
    to_land = [i.settled_at - i.created_at for i in landings if i.settled_at]
    count = len(landings)
    return {
        "landed": count,
        "items": len(items),
        "hours": round(hours, 4),
        "landings_per_hour": round(count / hours, 3) if hours > 0 else None,
        "tokens_per_landed_item": round(tokens / count, 1) if count else None,
        "cost_per_landed_item_usd": round(cost / count, 6) if count else None,
        "wasted_tokens": int(wasted_tokens),
        "wasted_cost_usd": round(wasted_cost, 6),
        "wasted_share": round(wasted_tokens / tokens, 4) if tokens else 0.0,
        "conflicts": conflicts,
        "conflicts_per_landing": round(conflicts / count, 3) if count else None,
        "reworks": sum(max(0, len(i.attempts) - 1) for i in items),
        "rescues": rescues,
        "refused": sum(i.status is ItemStatus.REFUSED for i in items),
        "stalled": sum(i.status is ItemStatus.STALLED for i in items),
        "time_to_land_p50_s": _rounded(percentile(to_land, 0.50)),
        "time_to_land_p95_s": _rounded(percentile(to_land, 0.95)),
    }


def run_efficiency(store: Store, run: Run, items: list[WorkItem], usage: dict[str, float]) -> dict:
    """The run's efficiency block: the whole run, and each cycle with its verdict and checks."""
    events = store.events.read(run.id)
    hours = ((run.ended_at or now()) - run.created_at) / 3600
    checks = {entry["cycle"]: entry for entry in trend(check_history(store, run.id))}
    whole = figures(items, usage, usage.get("tokens", 0.0), usage.get("cost_usd", 0.0), hours,
                    _conflicts(events), _rescues(events))
    per_cycle = []
    for number in range(1, run.cycle + 1):
        mine = [i for i in items if i.cycle == number]
        ids = {i.id for i in mine}
        cycle_events = [e for e in events if e.data.get("item_id") in ids]
        cycle = store.cycles.get(run.id, number)
        cycle_hours = ((cycle.closed_at or run.ended_at or now()) - cycle.started_at) / 3600
        block = figures(mine, usage, usage.get(f"cycle:{number}:tokens", 0.0),
                        usage.get(f"cycle:{number}:cost_usd", 0.0), cycle_hours, _conflicts(cycle_events),
                        _rescues(cycle_events))
        verdicts = [e.data for e in events if e.type == "verdict" and e.data.get("cycle") == number]
        block.update(cycle=number, verdict=("done" if verdicts[-1].get("done") else "not done") if verdicts else None,
                     checks=checks.get(number, {"runs": 0, "failures": 0, "last": None}))
        per_cycle.append(block)
    return {**whole, "cycles": per_cycle}


def _conflicts(events) -> int:
    return sum(1 for e in events if e.type == "conflict")


def _rescues(events) -> int:
    return len({e.data["rescue_branch"] for e in events if e.type in RESCUE_EVENTS and e.data.get("rescue_branch")})


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
