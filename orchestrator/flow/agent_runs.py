"""Running one role's builtin agent with Cadre's accounting, budgets, transcripts and stop checks."""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.agent.loop import AgentLoop, AgentResult, Tool, Transcript
from orchestrator.config.settings import Role, get_settings
from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.queues.shutdown import shutdown_requested
from orchestrator.state.models import TERMINAL_RUN_STATUSES, RunStatus
from orchestrator.state.store import Store

log = logging.getLogger(__name__)


def transcript_path(run_id: str, name: str) -> Path:
    """Where the transcript `name` of a run lives: `<data dir>/transcripts/<run>/<name>.jsonl`."""
    return get_settings().data_dir / "transcripts" / run_id / f"{name}.jsonl"


def run_role_agent(store: Store, role: Role, run_id: str, transcript_name: str, system: str, user: str,
                   tools: list[Tool], max_steps: int | None = None, scopes: dict[str, str] | None = None,
                   max_cost_usd: float | None = None) -> AgentResult:
    """Run the builtin agent of `role`; every call's tokens and cost go to the run's usage under `scopes`.

    The agent stops at its next step once the run has ended (stopped, out of budget...), this
    process was asked to shut down (SIGTERM), or its own `max_cost_usd` is spent. A model that
    cannot be used at all (bad key, unknown model) ends the run `failed` with that one-line reason.
    """
    from orchestrator.agent.model_access import LiteLLMModel, ModelAccessError  # litellm's import is slow

    settings = get_settings()
    spent = {"cost": 0.0}

    def record(reply) -> None:
        spent["cost"] += reply.cost_usd
        store.usage.add(run_id, role, reply.tokens, reply.cost_usd, scopes)
        enforce_run_budget(store, run_id, settings.budget_warning_fraction)

    def must_stop() -> bool:
        if max_cost_usd is not None and spent["cost"] >= max_cost_usd:
            return True
        return shutdown_requested() or store.runs.get(run_id).status in TERMINAL_RUN_STATUSES

    loop = AgentLoop(
        model=LiteLLMModel(settings, role), tools=tools, max_steps=max_steps or settings.role_setting(role, "max_steps"),
        output_limit=settings.tool_output_chars, transcript=Transcript(transcript_path(run_id, transcript_name)),
        on_reply=record, should_stop=must_stop,
    )
    try:
        return loop.run(system, user)
    except ModelAccessError as exc:
        log.error("run %s: %s", run_id, exc)
        store.runs.end(run_id, RunStatus.FAILED, str(exc))
        return AgentResult(status="stopped", transcript=loop.transcript.path)
