"""The seam between an attempt and the branch: a `Landing` strategy lands a worktree's commit or rescues it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from orchestrator.git.cache import BareCache
from orchestrator.landing.outcomes import LandingResult

# Resolution turns a worker's agent gets for the conflicts of one landing.
CONFLICT_TURNS = 2

ConflictResolver = Callable[[list[str]], bool]
"""Gets the conflicting paths of a stopped rebase; returns True once the rebase is complete."""


class Landing(Protocol):
    """Lands the commit at a worktree's HEAD on `branch`, or pushes it to the attempt's rescue branch.

    Whatever the strategy: a stale attempt (`still_holds_lease()` False) never moves the branch, an item
    already on the branch is never landed twice, and a commit that cannot land is never lost.
    """

    def land(self, worktree: Path, cache: BareCache, branch: str, item_id: str, attempt: int,
             still_holds_lease: Callable[[], bool],
             resolve_conflicts: ConflictResolver | None = None) -> LandingResult: ...
