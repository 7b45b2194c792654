"""What a landing ends as, typed: the result of one attempt's landing, the lander's answer to one request,
the errors that stop a landing, and the wall time of its steps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum


class LandingOutcome(str, Enum):
    """Where an attempt's commit ended up."""

    LANDED = "landed"  # on the branch
    RESCUED = "rescued"  # on the attempt's rescue branch (a conflict not resolved, retries spent, landed before)
    STALE = "stale"  # on the rescue branch because the attempt lost its lease: the item needs a new attempt


@dataclass
class LandingResult:
    """One attempt's landing: its outcome, the commit (on the branch, or the rescued head) and what it took."""

    outcome: LandingOutcome
    commit: str
    retries: int = 0
    rescue_branch: str | None = None
    conflicted_paths: list[str] = field(default_factory=list)
    reason: str = ""
    steps: dict[str, float] = field(default_factory=dict)  # seconds by step name, measured where they ran

    @property
    def landed(self) -> bool:
        return self.outcome is LandingOutcome.LANDED

    @property
    def stale(self) -> bool:
        return self.outcome is LandingOutcome.STALE


class Answer(str, Enum):
    """The lander's answer to one landing request."""

    LANDED = "landed"  # with the commit now on the branch
    CONFLICT = "conflict"  # with the conflicting paths: the worker rebases, resolves and asks again
    STALE = "stale"  # the attempt no longer holds its lease
    MISSING = "missing"  # a request without a pending ref whose commit is not on the lander's host
    TIMEOUT = "timeout"  # no answer in time (said by the waiting worker, never by a lander)


class LandingError(RuntimeError):
    """A landing that could not go on; whatever was committed is still in the worker's slot."""


class PushFailed(LandingError):
    """A push to the branch failed for a reason other than the branch having moved."""


class RescueFailed(LandingError):
    """The attempt's rescue branch could not be pushed (the slot is salvaged before any reuse)."""


class PendingRefFailed(LandingError):
    """The commit could not be pushed to its pending ref for the lander to fetch."""


@contextmanager
def timed(steps: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall time of the block to `steps[step]` (seconds)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        steps[step] = steps.get(step, 0.0) + time.perf_counter() - began
