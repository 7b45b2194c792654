"""How an attempt ends, typed: what happens to its item next, and the exits that end it early.

A step of an attempt that cannot go on raises an `AttemptExit` carrying the attempt's `Outcome`
(its work already kept on the rescue branch); `attempt_item` catches it once and returns the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from orchestrator.state.models import AttemptOutcome, Handoff


class Next(Enum):
    """What happens to the item after an attempt."""

    DONE = "done"  # settle `done` (landed, or nothing to change)
    FAILED = "failed"  # settle `failed` (its planner decides what follows)
    RETRY = "retry"  # a new attempt; this one counts as a failure
    RESUME = "resume"  # a new attempt after a graceful stop (shutdown); this one does not count
    PAUSED = "paused"  # given back before its agent started: the run was paused (parked until it resumes)
    REFUSED = "refused"  # settle `refused`: its commit touched a protected path (work on the rescue branch)
    STALLED = "stalled"  # settle `stalled`: its agent repeated itself or changed nothing (work rescued)


@dataclass(frozen=True)
class Outcome:
    """An attempt's end: what comes next for its item, its handoff, why, and how the attempt itself ended
    (`attempt_outcome`; by default the handoff's status, `error` or `interrupted`)."""

    next: Next
    handoff: Handoff
    reason: str = ""
    attempt_outcome: AttemptOutcome | None = None


class AttemptExit(Exception):
    """Ends an attempt before it lands, with its outcome; its work is already on the rescue branch."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.reason or outcome.handoff.summary)
        self.outcome = outcome


class AlreadyLanded(AttemptExit):
    """An earlier attempt of the item landed it: nothing is redone."""


class StoppedAtLimit(AttemptExit):
    """The agent reached its step or cost limit, or Cadre's time limit: a continuation may go on from its work."""


class AgentStopped(AttemptExit):
    """The agent stopped early (its run ended, a shutdown) or failed."""


class PausedBeforeStart(AttemptExit):
    """The run was paused between the claim and the agent's start: the agent never starts."""


class TouchedProtected(AttemptExit):
    """The commit adds, changes or deletes a protected path: it goes to the rescue branch, not the branch."""


class Stalled(AttemptExit):
    """The agent repeated one tool call, or changed nothing, for too long: stopped, its work rescued."""


class NothingToLand(AttemptExit):
    """The agent changed nothing, or its change may not land (too large, risky attributes)."""
