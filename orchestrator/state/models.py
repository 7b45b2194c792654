"""Contracts between Cadre's processes: frozen pydantic models stored in Redis as JSON."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


def new_id(prefix: str) -> str:
    """A short, unique, URL-safe id such as `run-3f9a0c1b2d4e`."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def now() -> float:
    """Wall-clock seconds since the epoch (all timestamps in Cadre use this)."""
    return time.time()


class Contract(BaseModel):
    """Base of every stored record: immutable, and tolerant of fields it does not know: a record written
    by a newer version (a rolling upgrade) is read, worked on and written back with those fields kept."""

    model_config = ConfigDict(frozen=True, extra="allow")


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # nothing new starts; what runs finishes and lands (`cadre pause`)
    DRAINING = "draining"  # as paused, then it ends `stopped` once nothing runs (`cadre drain`)
    DONE = "done"
    MAX_CYCLES = "max_cycles"
    STOPPED = "stopped"
    FAILED = "failed"
    BUDGET_EXHAUSTED = "budget_exhausted"


class CycleStatus(StrEnum):
    PLANNING = "planning"
    JUDGING = "judging"
    CLOSED = "closed"


class NodeStatus(StrEnum):
    PENDING = "pending"
    PLANNING = "planning"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"


class ItemStatus(StrEnum):
    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"  # planned in a run started with --approve-plans: waits for approval
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # dropped by `cadre cancel` or `cadre reject`, or not started when its run drained
    REFUSED = "refused"  # its commit touched a protected path: not landed, its work on its rescue branch
    STALLED = "stalled"  # its agent repeated itself or changed nothing for too long: stopped, work rescued

    @classmethod
    def _missing_(cls, value: object) -> ItemStatus | None:
        return cls.QUEUED if value == "pending" else None  # the name of `queued` in records of earlier versions


SETTLED_ITEM_STATUSES = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED, ItemStatus.REFUSED,
                                   ItemStatus.STALLED})
# A run whose status is one of these has not ended: its state may still change.
LIVE_RUN_STATUSES = frozenset({RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.DRAINING})
SETTLED_NODE_STATUSES = frozenset({NodeStatus.DONE, NodeStatus.FAILED})


class HandoffStatus(StrEnum):
    LANDED = "landed"
    NO_CHANGE = "no_change"
    RESCUED = "rescued"
    PARTIAL = "partial"  # stopped at a limit; its work is on `rescue_branch`, to be continued
    FAILED = "failed"


class Run(Contract):
    """One goal on one repository and branch, from `cadre run` until it ends."""

    id: str
    repo: str
    branch: str
    goal: str
    status: RunStatus = RunStatus.RUNNING
    cycle: int = 1
    max_cycles: int
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_hours: float | None = None
    worker_backend: str = "builtin"
    check_command: str | None = None
    start_commit: str | None = None
    created_at: float = Field(default_factory=now)
    ended_at: float | None = None
    reason: str = ""

    approve_plans: bool = False  # planned items wait for `cadre approve` (`cadre run --approve-plans`)
    protect: list[str] = Field(default_factory=list)  # globs of paths no worker may change (`--protect`)
    protect_allow_planned: bool = False  # planners may create items allowed to change them

    @property
    def is_over(self) -> bool:
        """Whether the run has ended (done, stopped, failed, out of budget or cycles): nothing changes any more."""
        return self.status not in LIVE_RUN_STATUSES

    @property
    def is_paused(self) -> bool:
        """Paused or draining: no new attempt, planner round or cycle starts; what runs finishes."""
        return self.status in (RunStatus.PAUSED, RunStatus.DRAINING)


class Verdict(Contract):
    """The judge's decision on a cycle, with the check command's result."""

    done: bool
    reason: str
    next_focus: str = ""
    check_passed: bool | None = None
    check_output: str = ""


class Event(Contract):
    """One entry of a run's event stream."""

    type: str
    run_id: str
    at: float = Field(default_factory=now)
    data: dict = Field(default_factory=dict)


GUIDANCE_AUDIENCES = ("planners", "workers", "all")


class Guidance(Contract):
    """Text an operator added to a live run (`cadre guide`): planners and the judge see it (`to` planners or
    all), workers too (`to` workers or all), in every prompt that starts afterwards."""

    at: float = Field(default_factory=now)
    text: str
    by: str  # user@host of whoever gave it
    to: str = "planners"

    def reaches(self, audience: str) -> bool:
        """Whether `audience` (planners, which include the judge, or workers) sees this guidance."""
        return self.to in (audience, "all")


class Cycle(Contract):
    """One plan → work → judge pass of a run, numbered from 1."""

    run_id: str
    number: int
    root_node_id: str
    status: CycleStatus = CycleStatus.PLANNING
    started_at: float = Field(default_factory=now)
    judging_at: float | None = None
    closed_at: float | None = None
    verdict: Verdict | None = None


class PlannerNode(Contract):
    """One planner invocation: a cycle's root or a sub-planner for an area, with its rounds."""

    id: str
    run_id: str
    cycle: int
    parent_id: str | None = None
    area: str = ""
    brief: str = ""
    depth: int = 0
    status: NodeStatus = NodeStatus.PENDING
    round: int = 1
    children_in_round: int = 0
    subplanners: int = 0
    parent_round: int = 0
    summary: str = ""
    error: str = ""
    created_at: float = Field(default_factory=now)
    queued_at: float = Field(default_factory=now)  # when its current round was queued (for lost messages)
    started_at: float | None = None
    parked: bool = False  # its round was delivered while the run was paused: resuming the run sends it again


class AttemptOutcome(StrEnum):
    """How one attempt ended: its handoff's status, or how it stopped without a handoff of its own."""

    LANDED = "landed"
    NO_CHANGE = "no_change"
    RESCUED = "rescued"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # a graceful stop (shutdown): it does not use up an attempt
    LOST = "lost"  # its lease lapsed: the worker died, froze or was cut off
    ERROR = "error"  # an error in Cadre's own code around the agent


class Attempt(Contract):
    """One execution of a work item: who ran it (host, the Celery worker's hostname, pid), when, and how
    it ended (`outcome`, None while it runs). Records written by earlier versions call the hostname `node`."""

    number: int
    host: str
    celery_hostname: str = Field(default="", validation_alias=AliasChoices("celery_hostname", "node"))
    pid: int = 0
    started_at: float = Field(default_factory=now)
    ended_at: float | None = None
    outcome: AttemptOutcome | None = None


# The structured notes of a handoff besides its summary (fields of `Handoff`, filled from what an agent wrote).
HANDOFF_NOTES = ("concerns", "deviations", "findings", "suggestions")


class Handoff(Contract):
    """What an attempt hands back: how it ended, its notes, and what it measured."""

    status: HandoffStatus
    summary: str = ""
    concerns: str = ""
    deviations: str = ""
    findings: str = ""
    suggestions: str = ""
    commit: str | None = None
    rescue_branch: str | None = None
    files_changed: list[str] = Field(default_factory=list)
    insertions: int = 0
    deletions: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    attempt: int = 1
    usage_reported: bool = True
    conflicted_paths: list[str] = Field(default_factory=list)


class WorkItem(Contract):
    """One task for one worker, with its attempts and, once settled, its handoff."""

    id: str
    run_id: str
    cycle: int
    node_id: str
    title: str
    instructions: str
    scope: str = ""
    acceptance: str = ""
    priority: int = 0
    start_ref: str | None = None  # a branch to start from (a partial item's rescue branch), not the branch head
    round: int = 1
    status: ItemStatus = ItemStatus.QUEUED
    queued_at: float = Field(default_factory=now)  # when its next attempt was queued (for lost messages)
    attempt: int = 0
    failures: int = 0
    interruptions: int = 0
    attempts: list[Attempt] = Field(default_factory=list)
    created_at: float = Field(default_factory=now)
    started_at: float | None = None
    settled_at: float | None = None
    handoff: Handoff | None = None
    parked: bool = False  # delivered while its run was paused: resuming the run sends it again
    may_change_protected: bool = False  # created with `change_protected` in a run with --protect-allow-planned
    continued_by: str | None = None  # the continuation item created when this one stalled (once)
    continues: str | None = None  # the stalled item this one continues
    cancel_requested: bool = False  # `cadre cancel` while it ran: its attempt stops at its next step

