"""Typed views of `CadreSettings`, one per component: a role's model and limits, Redis, the sandbox, landing,
planning, budgets.

The flat `CADRE_*` fields of `CadreSettings` stay the storage (they are what users set, in the environment or
`.env`); each view is a frozen snapshot built from them when asked for (`settings.role("worker")`,
`settings.sandbox`...), so a component reads typed attributes and never builds a setting's name as a string.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings

# The views are built from `orchestrator.config.settings.CadreSettings`, which imports this module: they name
# it by its base class, so neither module imports the other back.
CadreSettings = BaseSettings

Role = Literal["planner", "subplanner", "worker", "judge"]
ROLES: tuple[Role, ...] = ("planner", "subplanner", "worker", "judge")

# A task's soft time limit comes this much before its hard one, so the agent stops and keeps its work.
SOFT_LIMIT_MARGIN_SECONDS = 30
SHORTEST_SOFT_LIMIT_SECONDS = 10


def soft_limit_before(hard_seconds: int) -> int:
    """The soft time limit of a task whose hard limit is `hard_seconds`: a margin earlier, never below 10 s."""
    return max(hard_seconds - SOFT_LIMIT_MARGIN_SECONDS, SHORTEST_SOFT_LIMIT_SECONDS)


def _own_or_planners(settings: CadreSettings, role: Role, name: str):
    """`<role>_<name>`; a sub-planner takes the planner's when its own is unset or empty."""
    value = getattr(settings, f"{role}_{name}")
    if role == "subplanner" and not value:
        value = getattr(settings, f"planner_{name}")
    return value


@dataclass(frozen=True)
class RoleSettings:
    """How one role's agents run: their model (as configured: see `CadreSettings.model_for` for the model
    actually called, the demo model included), its parameters and price, and the agent's limits.

    A sub-planner falls back to the planner's model settings when its own are unset or empty, and always
    has the planner's step and time limits (there are no sub-planner ones)."""

    name: Role
    model: str | None
    api_base: str | None
    model_params: dict
    fallbacks: list[str]
    price_per_mtok: tuple[float, float] | None
    max_steps: int
    time_limit_seconds: int
    uses_demo_model: bool
    """No model of its own, and a demo model URL is set: the role runs on the demo model."""

    @property
    def soft_time_limit_seconds(self) -> int:
        """When a task of this role is asked to stop (`SoftTimeLimitExceeded`), before its hard limit."""
        return soft_limit_before(self.time_limit_seconds)

    @classmethod
    def of(cls, settings: CadreSettings, role: Role) -> RoleSettings:
        """The settings of `role`; ValueError for a name that is not a role."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        limits_of: Role = "planner" if role == "subplanner" else role
        model = _own_or_planners(settings, role, "model")
        return cls(name=role, model=model, api_base=_own_or_planners(settings, role, "api_base"),
                   model_params=dict(_own_or_planners(settings, role, "model_params") or {}),
                   fallbacks=list(_own_or_planners(settings, role, "fallbacks") or []),
                   price_per_mtok=_own_or_planners(settings, role, "price_per_mtok"),
                   max_steps=getattr(settings, f"{limits_of}_max_steps"),
                   time_limit_seconds=getattr(settings, f"{limits_of}_time_limit_seconds"),
                   uses_demo_model=not model and bool(settings.demo_model_url))


@dataclass(frozen=True)
class RedisSettings:
    """Where the broker and state store is, and the TLS files a `rediss://` URL is verified with."""

    url: str
    tls_ca_file: Path | None
    tls_cert_file: Path | None
    tls_key_file: Path | None
    master_name: str = "cadre"

    @property
    def sentinel(self) -> bool:
        """Whether `url` names Redis Sentinels (which say where the master is) rather than Redis itself."""
        return self.url.startswith("sentinel://")

    def ssl_options(self) -> dict:
        """redis-py's TLS keywords for a `rediss://` URL (certificate verified), else {}."""
        if not self.url.startswith("rediss://"):
            return {}
        options: dict = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        for key, path in (("ssl_ca_certs", self.tls_ca_file), ("ssl_certfile", self.tls_cert_file),
                          ("ssl_keyfile", self.tls_key_file)):
            if path is not None:
                options[key] = str(path)
        return options

    @classmethod
    def of(cls, settings: CadreSettings) -> RedisSettings:
        """The Redis settings of `settings`."""
        return cls(url=settings.redis_sentinel_url or settings.redis_url, tls_ca_file=settings.redis_tls_ca_file,
                   tls_cert_file=settings.redis_tls_cert_file, tls_key_file=settings.redis_tls_key_file,
                   master_name=settings.redis_master_name)


@dataclass(frozen=True)
class SandboxSettings:
    """Where agent commands, external agents and checks run, what they see, and what they may use."""

    mode: Literal["bwrap", "off"]
    """`bwrap` (bubblewrap) or `off` (plain processes): `CADRE_SANDBOX`."""
    network: bool
    env: list[str]
    readable: list[Path]
    hidden: list[Path]
    max_processes: int
    max_memory_mb: int
    max_file_mb: int
    max_tmp_mb: int
    agent_allowed_hosts: list[str]
    """Hosts external agents may reach through the egress proxy, besides their model's endpoint."""

    @classmethod
    def of(cls, settings: CadreSettings) -> SandboxSettings:
        """The sandbox settings of `settings`."""
        return cls(mode=settings.sandbox_mode, network=settings.sandbox_network, env=list(settings.sandbox_env),
                   readable=list(settings.sandbox_readable), hidden=list(settings.sandbox_hidden),
                   max_processes=settings.sandbox_max_processes, max_memory_mb=settings.sandbox_max_memory_mb,
                   max_file_mb=settings.sandbox_max_file_mb, max_tmp_mb=settings.sandbox_max_tmp_mb,
                   agent_allowed_hosts=list(settings.agent_allowed_hosts))


@dataclass(frozen=True)
class LandingSettings:
    """How a worker's commit reaches the run's branch."""

    strategy: Literal["direct", "queue"]
    """`direct` (the worker fetches, rebases, pushes) or `queue` (the branch's lander): `CADRE_INTEGRATION`."""
    push_interval_seconds: float
    """Queue strategy: at most one push to the branch per this many seconds."""
    push_attempts: int
    """Direct strategy: fetch → rebase → push tries before the worker rescues its commit."""
    max_commit_bytes: int
    """The largest change (and file) a worker may commit."""

    @classmethod
    def of(cls, settings: CadreSettings) -> LandingSettings:
        """The landing settings of `settings`."""
        return cls(strategy=settings.integration, push_interval_seconds=settings.land_push_interval_seconds,
                   push_attempts=settings.push_attempts, max_commit_bytes=settings.max_commit_bytes)


@dataclass(frozen=True)
class PlanningSettings:
    """The bounds of one cycle's planning tree."""

    max_tasks_per_cycle: int
    max_depth: int
    max_subplanners_per_node: int
    max_nodes_per_cycle: int
    max_rounds_per_node: int

    @classmethod
    def of(cls, settings: CadreSettings) -> PlanningSettings:
        """The planning bounds of `settings`."""
        return cls(max_tasks_per_cycle=settings.max_tasks_per_cycle, max_depth=settings.max_depth,
                   max_subplanners_per_node=settings.max_subplanners_per_node,
                   max_nodes_per_cycle=settings.max_nodes_per_cycle, max_rounds_per_node=settings.max_rounds_per_node)


@dataclass(frozen=True)
class BudgetSettings:
    """The default budgets of a run (each None: unbounded), and of one work item's agent."""

    max_cost_usd: float | None
    max_tokens: int | None
    max_hours: float | None
    warning_fraction: float
    """The spent fraction of a run budget at which a `budget_warning` event is emitted once."""
    item_max_cost_usd: float | None

    @classmethod
    def of(cls, settings: CadreSettings) -> BudgetSettings:
        """The budgets of `settings`."""
        return cls(max_cost_usd=settings.max_cost_usd, max_tokens=settings.max_tokens, max_hours=settings.max_hours,
                   warning_fraction=settings.budget_warning_fraction, item_max_cost_usd=settings.item_max_cost_usd)
