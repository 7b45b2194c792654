"""Run budgets enforced in code: cost, tokens and wall time, with a one-time warning before the end.

When a budget is spent the run ends `budget_exhausted` (and `max_cycles` when its cycle limit was lowered
below the cycle that runs): nothing new is dispatched, and running agents stop before their next model call
(their work rescued), because every agent enforces the budget before each call.
"""

from __future__ import annotations

import logging

from orchestrator.state.keys import Keys
from orchestrator.state.models import Run, RunStatus, now
from orchestrator.state.runs import RUN_RETENTION_SECONDS
from orchestrator.state.store import Store

log = logging.getLogger(__name__)


def budget_fractions(store: Store, run: Run) -> dict[str, float]:
    """How much of each configured budget of the run is spent (1.0 = all of it)."""
    usage = store.usage.spent(run.id) if run.max_cost_usd or run.max_tokens else {}
    fractions = {}
    if run.max_cost_usd:
        fractions["cost"] = usage.get("cost_usd", 0.0) / run.max_cost_usd
    if run.max_tokens:
        fractions["tokens"] = usage.get("tokens", 0.0) / run.max_tokens
    if run.max_hours:
        fractions["time"] = (now() - run.created_at) / (run.max_hours * 3600)
    return fractions


def enforce_run_budget(store: Store, run_id: str, warning_fraction: float) -> bool:
    """End the run `budget_exhausted` if a budget is spent; warn once per budget past the fraction.

    Returns True if the run has ended (now or before).
    """
    run = store.runs.get(run_id)
    if run.is_over:
        return True
    if run.cycle > run.max_cycles:  # lowered live (`cadre budget --max-cycles`) below the cycle that runs
        reason = f"max cycles lowered to {run.max_cycles} while cycle {run.cycle} ran"
        if store.runs.end(run_id, RunStatus.MAX_CYCLES, reason):
            log.warning("run %s: %s", run_id, reason)
        return True
    fractions = budget_fractions(store, run)
    spent = sorted(kind for kind, fraction in fractions.items() if fraction >= 1.0)
    if spent:
        usage = store.usage.spent(run_id)
        reason = (f"{' and '.join(spent)} budget spent: ${usage.get('cost_usd', 0):.4f} of "
                  f"{run.max_cost_usd or '-'} USD, {int(usage.get('tokens', 0))} of {run.max_tokens or '-'} tokens, "
                  f"{(now() - run.created_at) / 3600:.2f} of {run.max_hours or '-'} hours")
        if store.runs.end(run_id, RunStatus.BUDGET_EXHAUSTED, reason):
            log.warning("run %s: %s", run_id, reason)
        return True
    for kind, fraction in fractions.items():
        if fraction >= warning_fraction and store.redis.set(Keys.budget_warned(run_id, kind), 1, nx=True,
                                                            ex=RUN_RETENTION_SECONDS):
            store.events.emit(run_id, "budget_warning", budget=kind, fraction=round(fraction, 3))
    return False
