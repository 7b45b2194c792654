"""What a trial left behind, measured on the bare remote, in Redis and at the scripted model; and the totals.

planned      the tasks the scripted planner was told to create (counted at the model, not in Cadre's records)
landed       commits on the remote's `main` whose `Cadre-Item: <id>` trailer names the item
lost         a planned task that never landed and never settled (no record at all, or still pending/running)
duplicated   an item whose trailer is on `main` more than once
unlanded     an item settled without landing (failed, or rescued to a branch): not lost, but not done either
recovery     from the fault to the settling of the last item that was unsettled when it struck (to the end of
             the run when none was, or when the fault hit the run as a whole: the judge); none if that never came
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from bench.faults.stack import Stack
from orchestrator.landing.trailers import ITEM_TRAILER
from orchestrator.state.models import ItemStatus
from tests.services import git

RECOVERY_TARGET_SECONDS = 120.0
UNSETTLED = {ItemStatus.QUEUED, ItemStatus.RUNNING}


def trailer_counts(stack: Stack) -> Counter:
    """How many commits on the remote's `main` carry each `Cadre-Item` value."""
    out = git("log", f"--format=%(trailers:key={ITEM_TRAILER},valueonly)", "main", cwd=stack.remote)
    return Counter(line.strip() for line in out.splitlines() if line.strip())


@dataclass
class Trial:
    fault: str
    run_id: str
    planned: int = 0
    landed: int = 0
    lost: int = 0
    duplicated: int = 0
    unlanded: int = 0
    recovery: float | None = None  # seconds; None: the system did not recover (within the run timeout)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        recovery = f"{self.recovery:.1f} s" if self.recovery is not None else "never"
        return (f"{self.run_id}: {self.planned} planned, {self.landed} landed, {self.lost} lost, "
                f"{self.duplicated} duplicated, {self.unlanded} settled unlanded, recovery {recovery}"
                + "".join(f"\n    {note}" for note in self.notes))


def tally(stack: Stack, fault: str, run_id: str, tag: str, hit: list[str], fault_at: float, ended: bool,
          whole_run: bool = False, notes: list[str] | None = None) -> Trial:
    """Measure the trial of `fault` on run `run_id` (goal `tag`), the fault having struck at `fault_at`
    (epoch seconds) while the items `hit` were unsettled."""
    trial = Trial(fault, run_id, notes=list(notes or []))
    if not ended:
        trial.notes.append(f"run {run_id} did not end within {stack.settings.run_timeout:g} s (stopped)")
    counts, items = trailer_counts(stack), stack.items(run_id)
    planned = stack.policy.planned(tag)
    trial.planned = len(planned)
    unrecorded = planned - {i.title for i in items}
    trial.lost += len(unrecorded)
    trial.notes += [f"planned task {title!r} has no item record" for title in sorted(unrecorded)]
    for item in items:
        landed = counts[item.id]
        trial.landed += landed >= 1
        trial.duplicated += landed > 1
        trial.lost += landed == 0 and item.status in UNSETTLED
        trial.unlanded += landed == 0 and item.status not in UNSETTLED
        if landed != 1:
            handoff = item.handoff
            trial.notes.append(f"item {item.id} on main {landed}x: status {item.status.value}, attempt {item.attempt}, "
                               f"handoff {handoff.status.value if handoff else None}: "
                               + (handoff.summary if handoff else "").replace("\n", " ")[:300])
    # Hit: unsettled when the fault struck (`hit` was read just before; one may have settled in between).
    struck = [i for i in items if i.id in hit and (i.settled_at is None or i.settled_at >= fault_at)]
    trial.recovery = _recovery(stack, run_id, struck, fault_at, ended, whole_run)
    return trial


def _recovery(stack: Stack, run_id: str, hit: list, fault_at: float, ended: bool, whole_run: bool) -> float | None:
    if hit and not whole_run:
        settled = [i.settled_at for i in hit if i.status not in UNSETTLED and i.settled_at is not None]
        return max(settled) - fault_at if len(settled) == len(hit) else None
    ended_at = stack.run(run_id).ended_at
    return ended_at - fault_at if ended and ended_at is not None else None


@dataclass
class Totals:
    """Every counted trial of one fault (a trial whose fault could not be injected is not counted)."""

    fault: str
    trials: list[Trial] = field(default_factory=list)
    asked: int = 0  # trials asked for
    skipped: int = 0  # runs in which the fault's moment never came
    errors: list[str] = field(default_factory=list)  # trials ended by an exception (not counted)

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.trials)

    @property
    def recoveries(self) -> list[float]:
        return [t.recovery for t in self.trials if t.recovery is not None]

    @property
    def unrecovered(self) -> int:
        return sum(t.recovery is None for t in self.trials)

    def failures(self) -> list[str]:
        """What misses the targets (0 lost, 0 duplicated, every recovery under two minutes), and unlanded items."""
        found = [f"{self.total(n)} {n}" for n in ("lost", "duplicated", "unlanded") if self.total(n)]
        found += [f"{self.unrecovered} never recovered"] if self.unrecovered else []
        slow = sum(r >= RECOVERY_TARGET_SECONDS for r in self.recoveries)
        found += [f"{slow} recoveries >= {RECOVERY_TARGET_SECONDS:g} s"] if slow else []
        found += [f"{len(self.errors)} trials ended by an error"] if self.errors else []
        found += [f"{len(self.trials)} of {self.asked} trials"] if len(self.trials) < self.asked else []
        return found

    def row(self, label: str | None = None) -> str:
        recoveries = self.recoveries
        p50 = f"{statistics.median(recoveries):.1f}" if recoveries else "-"
        worst = f"{max(recoveries):.1f}" if recoveries else "-"
        failures = self.failures()
        verdict = "pass" if self.trials and not failures else "FAIL: " + (", ".join(failures) or "no trial")
        return (f"| {label or self.fault} | {len(self.trials)} | {self.total('lost')} | {self.total('duplicated')} "
                f"| {p50} | {worst} | {verdict} |")


def combined(results: list[Totals]) -> Totals:
    """All faults' trials as one (the table's total row)."""
    return Totals("total", [t for r in results for t in r.trials], sum(r.asked for r in results),
                  sum(r.skipped for r in results), [e for r in results for e in r.errors])
