"""Cadre's one settings object, read from `CADRE_*` environment variables and an optional `.env`.

Its flat fields are what users set; components read them through typed views (`settings.role("worker")`,
`settings.redis`, `settings.sandbox`, `settings.landing`, `settings.planning`, `settings.budgets`: see
`components.py`).
"""

from __future__ import annotations

import logging
import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.config.components import (
    ROLES,
    BudgetSettings,
    LandingSettings,
    PlanningSettings,
    RedisSettings,
    Role,
    RoleSettings,
    SandboxSettings,
)

__all__ = ["CadreSettings", "DEMO_MODEL", "DEMO_MODEL_KEY", "MissingModelError", "REDIS_URL_FILE", "ROLES", "Role",
           "get_settings"]


# The model string roles use when they fall back to the demo model (see `demo_model_url`).
DEMO_MODEL = "openai/cadre-demo-model"
DEMO_MODEL_KEY = "demo-model-needs-no-key"
# Where `cadre up` leaves the URL of a Redis it started (in the data dir), for the user's other commands.
REDIS_URL_FILE = "redis.url"


class MissingModelError(ValueError):
    """A role has no model configured."""


class CadreSettings(BaseSettings):
    """Everything a Cadre process can be configured with. Each field maps to `CADRE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="CADRE_", env_file=".env", extra="ignore", use_attribute_docstrings=True,
                                      env_ignore_empty=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Broker and state store. One Redis holds queues, runs, items, leases and event streams.
    Use `rediss://` for TLS (with the certificate files below)."""
    redis_tls_ca_file: Path | None = None
    """TLS (`rediss://`): the CA certificate that signed Redis' certificate (PEM file)."""
    redis_tls_cert_file: Path | None = None
    """TLS: this client's certificate (PEM), when Redis asks for client certificates."""
    redis_tls_key_file: Path | None = None
    """TLS: this client's private key (PEM), with the certificate above."""
    redis_sentinel_url: str | None = None
    """Redis Sentinels to use instead of CADRE_REDIS_URL (which a compose file may set): a `sentinel://` URL as
    below. Set it in .env with `docker compose --profile sentinel`."""
    redis_master_name: str = "cadre"
    """With Redis Sentinel (`CADRE_REDIS_URL=sentinel://host1:26379;sentinel://host2:26379;...`): the name the
    Sentinels monitor the master under; every role asks them where it is, and follows a failover."""

    demo_model_url: str | None = None
    """Base URL of the deterministic demo model (an OpenAI-compatible server): every role without a
    model of its own uses it. Set CADRE_<ROLE>_MODEL to use a real model instead."""

    planner_model: str | None = None
    """litellm model string for root planners, e.g. `openai/gpt-4.1` or `anthropic/claude-sonnet-4-5`."""
    subplanner_model: str | None = None
    """Model for sub-planners; falls back to the planner model."""
    worker_model: str | None = None
    """Model for worker agents."""
    judge_model: str | None = None
    """Model for the judge."""

    planner_api_base: str | None = None
    """Optional API base for the planner model (an OpenAI-compatible server, a proxy...)."""
    subplanner_api_base: str | None = None
    """Optional API base for the sub-planner model; falls back to the planner's."""
    worker_api_base: str | None = None
    """Optional API base for the worker model."""
    judge_api_base: str | None = None
    """Optional API base for the judge model."""
    planner_model_params: dict = Field(default_factory=dict)
    """Extra litellm parameters for the planner model as JSON, e.g. `{"temperature": 0}`."""
    subplanner_model_params: dict = Field(default_factory=dict)
    """Extra litellm parameters for the sub-planner model (falls back to the planner's)."""
    worker_model_params: dict = Field(default_factory=dict)
    """Extra litellm parameters for the worker model."""
    judge_model_params: dict = Field(default_factory=dict)
    """Extra litellm parameters for the judge model."""
    planner_fallbacks: list[str] = Field(default_factory=list)
    """Models litellm falls back to, in order, when the planner model keeps failing (JSON list)."""
    subplanner_fallbacks: list[str] = Field(default_factory=list)
    """Fallback models for sub-planners (falls back to the planner's)."""
    worker_fallbacks: list[str] = Field(default_factory=list)
    """Fallback models for workers."""
    judge_fallbacks: list[str] = Field(default_factory=list)
    """Fallback models for the judge."""
    model_retries: int = Field(default=4, ge=0)
    """litellm retries (with backoff) of a model call on rate limits, server errors and timeouts."""
    api_key: SecretStr | None = None
    """Optional API key passed to every model call; providers' own variables work too."""

    planner_price_per_mtok: tuple[float, float] | None = None
    """`[input, output]` USD per million tokens when litellm has no price for the planner model."""
    subplanner_price_per_mtok: tuple[float, float] | None = None
    """Same for the sub-planner model."""
    worker_price_per_mtok: tuple[float, float] | None = None
    """Same for the worker model."""
    judge_price_per_mtok: tuple[float, float] | None = None
    """Same for the judge model."""

    worker_backend: str = "builtin"
    """Default worker agent: `builtin`, `claude-code`, `codex`, `aider`, `mini-swe-agent` or `command`."""
    worker_artifacts: list[str] = Field(default_factory=list)
    """Glob patterns (relative to the worktree) an external agent leaves that are never committed, besides
    its preset's own (e.g. `[".myagent/*"]`)."""
    worker_agent_env: list[str] = Field(default_factory=list)
    """Names of environment variables an external worker agent may see besides its backend's own
    (its model's key and base URL), as a JSON list."""
    worker_command: str | None = None
    """Command template for the `command` backend, with {prompt_file}, {prompt}, {handoff_file}, {model}."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    """Default cost budget of a run in USD (`cadre run --max-cost`)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Default token budget of a run (`cadre run --max-tokens`)."""
    max_hours: float | None = Field(default=None, gt=0)
    """Default wall-time budget of a run in hours (`cadre run --max-hours`)."""
    budget_warning_fraction: float = Field(default=0.8, gt=0, le=1)
    """A `budget_warning` event is emitted once when this fraction of a run budget is spent."""
    item_max_cost_usd: float | None = Field(default=None, gt=0)
    """Cost budget of one work item's agent; it stops at its next step beyond it."""

    data_dir: Path = Path.home() / ".cadre"
    """Host-local caches (bare mirrors, worktree slots) and agent transcripts."""
    transcript_max_bytes: int = Field(default=5_000_000, ge=10_000)
    """Compressed size at which a transcript stops streaming to Redis (the host's own file keeps it all)."""
    transcript_retention_days: float = Field(default=30, gt=0)
    """How long transcripts stay in Redis after their last line."""

    max_cycles: int = Field(default=3, ge=1)
    """Default number of plan → work → judge cycles before a run ends `max_cycles`."""
    max_tasks_per_cycle: int = Field(default=30, ge=1)
    """Work items one cycle may create; `create_task` refuses beyond it."""
    max_depth: int = Field(default=3, ge=0)
    """Levels of sub-planners below the root (0: the root plans alone)."""
    max_subplanners_per_node: int = Field(default=6, ge=0)
    """Sub-planners one planner node may spawn."""
    max_nodes_per_cycle: int = Field(default=20, ge=0)
    """Sub-planner nodes one cycle may hold."""
    max_rounds_per_node: int = Field(default=3, ge=1)
    """Planning rounds of one node: the first, plus wake-ups when its children have settled."""
    planner_max_steps: int = Field(default=40, ge=1)
    """Model calls one planner agent may make."""
    worker_max_steps: int = Field(default=60, ge=1)
    """Model calls one worker agent may make."""
    judge_max_steps: int = Field(default=20, ge=1)
    """Model calls the judge agent may make."""
    tool_output_chars: int = Field(default=12_000, ge=200)
    """Tool output longer than this is cut (head and tail kept) before the model sees it."""
    command_timeout_seconds: int = Field(default=300, ge=1)
    """Time limit of one `bash` tool command."""

    planner_time_limit_seconds: int = Field(default=1800, ge=30)
    """Hard time limit of one planner task; the soft limit is 30 s earlier."""
    worker_time_limit_seconds: int = Field(default=3600, ge=30)
    """Hard time limit of one worker task; the soft limit is 30 s earlier."""
    judge_time_limit_seconds: int = Field(default=1800, ge=30)
    """Hard time limit of one judge task; the soft limit is 30 s earlier."""

    prompts_dir: Path | None = None
    """The operator's prompt overrides (`<role>/<name>.j2`), used before a repository's own `.cadre/prompts`."""

    sandbox_mode: Literal["bwrap", "off"] = Field(default="bwrap", validation_alias="CADRE_SANDBOX")
    """Where agent commands, external agents and checks run: `bwrap` (bubblewrap: own PID namespace,
    read-only system, only the worktree writable, allowlisted environment) or `off` (plain processes)."""
    sandbox_network: bool = False
    """Give the builtin agent's commands and the check command the host's network (off: none at all).
    External agents never get it: they reach their model, and `CADRE_AGENT_ALLOWED_HOSTS`, through the
    egress proxy only."""
    sandbox_env: list[str] = Field(default_factory=list)
    """Names of extra environment variables the builtin agent's commands and checks may see (JSON list)."""
    sandbox_readable: list[Path] = Field(default_factory=list)
    """Extra host paths the sandbox shows read-only (JSON list), besides the system folders and the tools
    and interpreters on PATH (e.g. `["/opt/toolchain"]`)."""
    sandbox_hidden: list[Path] = Field(default_factory=list)
    """Extra host paths the sandbox never shows, even inside a path it shows (JSON list)."""
    sandbox_max_processes: int = Field(default=512, ge=16)
    """Processes (and threads) one sandboxed command may have at once."""
    sandbox_max_memory_mb: int = Field(default=4096, ge=64)
    """Memory (data segment and heap) one process in the sandbox may allocate, in MiB."""
    sandbox_max_file_mb: int = Field(default=1024, ge=1)
    """Largest file a sandboxed process may write, in MiB."""
    sandbox_max_tmp_mb: int = Field(default=2048, ge=16)
    """Size of a sandboxed command's private /tmp (and /var/tmp), in MiB: memory, since they are tmpfs."""
    agent_allowed_hosts: list[str] = Field(default_factory=list)
    """Hosts (`host` or `host:port`) external agents may reach besides their model's endpoint (JSON list);
    everything else is refused by the egress proxy."""
    max_commit_mb: float = Field(default=50.0, gt=0)
    """Largest change a worker may commit (new and changed files together), in MB; a larger one, or a file
    larger than it, is refused and its work kept on the attempt's rescue branch."""

    protect: list[str] = Field(default_factory=list)
    """Globs of paths no worker may add, change or delete (JSON list), for every run (`cadre run --protect`
    adds to them), e.g. `["tests/*", "ci/check.sh"]`; a commit touching one is refused and rescued."""
    stall_repeats: int = Field(default=5, ge=2)
    """A builtin agent that makes the same tool call this many times in a row is stopped as stalled."""
    stall_idle_steps: int = Field(default=20, ge=2)
    """A builtin agent whose worktree has not changed for this many consecutive steps is stopped as stalled."""
    stall_seconds: int = Field(default=900, ge=10)
    """An external agent with no output and no worktree change for this many seconds is stopped as stalled."""

    check_command: str | None = None
    """Shell command run on the branch head before the judge decides (e.g. `pytest -q`)."""
    check_timeout_seconds: int = Field(default=900, ge=1)
    """Time limit of the check command."""

    integration: Literal["direct", "queue"] = "queue"
    """How workers land: `direct` (fetch, rebase, push loop) or `queue` (the branch's lander, by plumbing)."""
    land_push_interval_seconds: float = Field(default=0.0, ge=0)
    """Queue mode: at most one push to the branch per this many seconds (hosted remotes limit pushes)."""
    push_attempts: int = Field(default=12, ge=1)
    """Fetch → rebase → push tries before a worker gives up and rescues its commit."""
    max_attempts: int = Field(default=3, ge=1)
    """Attempts of one work item (lost workers, stops, errors) before it settles `failed`."""
    conflict_max_steps: int = Field(default=15, ge=1)
    """Model calls of a worker's conflict-resolution turn after a rebase conflict."""
    lease_seconds: int = Field(default=60, ge=3)
    """TTL of a running attempt's lease; a heartbeat refreshes it every third of that."""
    celery_worker_options: str = ""
    """Extra options of `celery worker` for every `cadre worker` (shell words), e.g. `--pool-restarts`."""
    celery_lean_traffic: bool = True
    """Celery without the traffic Cadre does not use: no gossip or mingle between workers, an event heartbeat
    every `celery_heartbeat_seconds`, no task-sent events, task events in batches. False: Celery's defaults
    (gossip, mingle, a heartbeat every 2 s, task-sent events, about one message per task event)."""
    celery_heartbeat_seconds: float = Field(default=10.0, gt=0)
    """Period of each worker's event heartbeat (Flower's liveness) when `celery_lean_traffic` is on."""
    celery_event_batch_seconds: float = Field(default=1.0, ge=0)
    """With `celery_lean_traffic`: a worker sends its task events for Flower in one message at most this often
    (0: as Celery does, about one message per event)."""
    tick_seconds: float = Field(default=30.0, gt=0)
    """Period of `cadre beat`'s judge tick (the safety net for lost triggers)."""

    git_author_name: str = "Cadre Agent"
    """Author of the commits workers make."""
    git_author_email: str = "cadre@localhost"
    """Author e-mail of the commits workers make."""

    def role(self, role: Role) -> RoleSettings:
        """The model and limits of `role`'s agents (a sub-planner's fall back to the planner's); ValueError
        for a name that is not a role."""
        return RoleSettings.of(self, role)

    @property
    def redis(self) -> RedisSettings:
        """The broker and state store: its URL and TLS files."""
        return RedisSettings.of(self)

    @property
    def sandbox(self) -> SandboxSettings:
        """Where agent commands and checks run (`CADRE_SANDBOX`), what they see, their resource limits."""
        return SandboxSettings.of(self)

    @property
    def landing(self) -> LandingSettings:
        """How workers' commits reach a run's branch (`CADRE_INTEGRATION`...)."""
        return LandingSettings.of(self)

    @property
    def planning(self) -> PlanningSettings:
        """The bounds of a cycle's planning tree."""
        return PlanningSettings.of(self)

    @property
    def budgets(self) -> BudgetSettings:
        """The default budgets of a run, and of one work item's agent."""
        return BudgetSettings.of(self)

    def uses_demo_model(self, role: Role) -> bool:
        """Whether `role` has no model of its own and falls back to the demo model."""
        return self.role(role).uses_demo_model

    def model_for(self, role: Role) -> str:
        """The model string for `role`; raises MissingModelError with a one-line message if unset."""
        settings = self.role(role)
        if settings.uses_demo_model:
            return DEMO_MODEL
        if not settings.model:
            raise MissingModelError(f"no model configured for role {role}: set CADRE_{role.upper()}_MODEL "
                                    "(or CADRE_DEMO_MODEL_URL for the demo model)")
        return settings.model

    def api_base_for(self, role: Role) -> str | None:
        """The API base for `role`'s model: its own, or the demo model's URL when it uses that."""
        settings = self.role(role)
        return self.demo_model_url if settings.uses_demo_model else settings.api_base

    @property
    def max_commit_bytes(self) -> int:
        """`max_commit_mb` in bytes: the bound of a commit, and of any file of it an agent made that Cadre reads."""
        return int(self.max_commit_mb * 1_000_000)

    @property
    def beat_loop_seconds(self) -> float:
        """The longest beat sleeps between two rounds of its loop (each round touches its heartbeat)."""
        return min(self.tick_seconds, 30.0)

    @property
    def visibility_timeout_seconds(self) -> int:
        """Redis redelivers an unacknowledged task after this; kept above every hard time limit."""
        longest = max(self.planner_time_limit_seconds, self.worker_time_limit_seconds, self.judge_time_limit_seconds)
        return longest + 600

    @model_validator(mode="before")
    @classmethod
    def _keywords_of_renamed_fields(cls, values):
        """A field read from an environment variable other than `CADRE_<FIELD>` (its `validation_alias`) is
        given as a keyword by its field name, or by that variable's name without `CADRE_`, like every other
        field (`CadreSettings(sandbox_mode="off")`, `CadreSettings(sandbox="off")`); a keyword wins over
        the environment and `.env`, as for every field."""
        if not isinstance(values, dict):
            return values
        for name, field in cls.model_fields.items():
            variable = field.validation_alias
            if not isinstance(variable, str):
                continue
            for keyword in (name, variable.removeprefix("CADRE_").lower()):
                if keyword in values:
                    values[variable] = values.pop(keyword)
        return values

    @model_validator(mode="after")
    def _redis_url_left_by_cadre_up(self) -> CadreSettings:
        """With no CADRE_REDIS_URL given (environment or .env), the URL `cadre up` left in
        `<data dir>/redis.url` for the Redis it started, if that file is a regular file owned by this
        user that no one else may read or write; otherwise the URL stays as it was."""
        if "redis_url" not in self.model_fields_set and (url := _private_redis_url(self.data_dir / REDIS_URL_FILE)):
            self.redis_url = url
        return self


def _private_redis_url(path: Path) -> str | None:
    """The Redis URL in `path`, or None when it is missing, not this user's own, or open to others."""
    try:
        # O_NOFOLLOW: a symlink there could point at someone else's file; O_NONBLOCK: a FIFO must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        logging.getLogger(__name__).warning("ignoring %s: %s", path, exc.strerror)
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            # Someone else could have read (or written) it: its password is not Cadre's to trust.
            logging.getLogger(__name__).warning("ignoring %s: it must be this user's file with mode 0600", path)
            return None
        url = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return url if url.startswith(("redis://", "rediss://")) else None


@lru_cache(maxsize=1)
def get_settings() -> CadreSettings:
    """The process-wide settings, read once."""
    return CadreSettings()
