"""Running one role's builtin agent with Cadre's accounting, transcripts and stop checks."""

from __future__ import annotations

from pathlib import Path

from orchestrator.agent_loop import AgentLoop, AgentResult, Tool, Transcript
from orchestrator.models import TERMINAL_RUN_STATUSES
from orchestrator.settings import Role, get_settings
from orchestrator.shutdown import shutdown_requested
from orchestrator.store import Store


def transcript_path(run_id: str, name: str) -> Path:
    """Where the transcript `name` of a run lives: `<data dir>/transcripts/<run>/<name>.jsonl`."""
    return get_settings().data_dir / "transcripts" / run_id / f"{name}.jsonl"


def run_role_agent(store: Store, role: Role, run_id: str, transcript_name: str, system: str, user: str,
                   tools: list[Tool], max_steps: int | None = None) -> AgentResult:
    """Run the builtin agent of `role`; every call's tokens and cost are added to the run's usage.

    The agent stops at its next step once the run has ended (stopped, out of budget...) or this
    process was asked to shut down (SIGTERM).
    """
    from orchestrator.model_access import LiteLLMModel  # litellm's import is slow: only when a model is called

    settings = get_settings()

    def record(reply) -> None:
        store.add_usage(run_id, role, reply.tokens, reply.cost_usd)

    def must_stop() -> bool:
        return shutdown_requested() or store.run(run_id).status in TERMINAL_RUN_STATUSES

    loop = AgentLoop(
        model=LiteLLMModel(settings, role), tools=tools, max_steps=max_steps or settings.max_steps_for(role),
        output_limit=settings.tool_output_chars, transcript=Transcript(transcript_path(run_id, transcript_name)),
        on_reply=record, should_stop=must_stop,
    )
    return loop.run(system, user)
