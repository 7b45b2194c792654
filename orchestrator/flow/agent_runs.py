"""Running one role's builtin agent with Cadre's accounting, budgets, transcripts and stop checks."""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.agent.commands import Shell, shell_for
from orchestrator.agent.loop import AgentLoop, AgentResult, Tool, Transcript
from orchestrator.agent.stall import StallWatch
from orchestrator.agent.prompts import REPOSITORY_PROMPTS, Prompts
from orchestrator.agent.tools import WorkspaceTools
from orchestrator.config.settings import CadreSettings, Role
from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.git.repo import common_git_dir, files_at
from orchestrator.queues.shutdown import shutdown_event, shutdown_requested
from orchestrator.state.models import Run, RunStatus
from orchestrator.state.store import Store

log = logging.getLogger(__name__)


def worktree_shell(settings: CadreSettings, worktree: Path) -> Shell:
    """The sandboxed shell of an agent working in `worktree` (its git cache readable, nothing else of Cadre's)."""
    return shell_for(settings, worktree, readable=(common_git_dir(worktree),))


def workspace_tools(settings: CadreSettings, worktree: Path) -> WorkspaceTools:
    """`bash`, `read_file` (and the edit tools) of an agent in `worktree`, stopped by a shutdown request."""
    return WorkspaceTools(worktree_shell(settings, worktree), settings.command_timeout_seconds, shutdown_event())


def run_prompts(settings: CadreSettings, run: Run, repository: Path) -> Prompts:
    """The run's prompt templates: the operator's overrides, then the repository's `.cadre/prompts` as of the
    run's starting commit (read from the git objects of `repository`, a worktree or cache), then Cadre's own.
    What workers commit to the branch during the run never changes them."""
    overrides = files_at(repository, run.start_commit, REPOSITORY_PROMPTS) if run.start_commit else {}
    return Prompts(overrides, settings.prompts_dir)


def transcript_path(settings: CadreSettings, run_id: str, name: str) -> Path:
    """Where the transcript `name` of a run lives on this host: `<data dir>/transcripts/<run>/<name>.jsonl`."""
    return settings.data_dir / "transcripts" / run_id / f"{name}.jsonl"


def open_transcript(store: Store, settings: CadreSettings, run_id: str, name: str,
                    item_id: str | None = None) -> Transcript:
    """A transcript written to this host's file and streamed to Redis as it grows (listed on its item)."""
    return Transcript(transcript_path(settings, run_id, name),
                      stream=lambda line: store.transcripts.append(run_id, name, line, item_id))


def run_role_agent(store: Store, settings: CadreSettings, role: Role, run_id: str, transcript_name: str, system: str, user: str,
                   tools: list[Tool], max_steps: int | None = None, scopes: dict[str, str] | None = None,
                   max_cost_usd: float | None = None, stall_watch: StallWatch | None = None) -> AgentResult:
    """Run the builtin agent of `role`; every call's tokens and cost go to the run's usage under `scopes`.

    The agent stops at its next step once the run has ended (stopped, out of budget...), this
    process was asked to shut down (SIGTERM), its own `max_cost_usd` is spent, or its item was cancelled. A model that
    cannot be used at all (bad key, unknown model) ends the run `failed` with that one-line reason.
    """
    from orchestrator.agent.model_access import LiteLLMModel, ModelAccessError  # litellm's import is slow

    spent = {"cost": 0.0}

    def record(reply) -> None:
        spent["cost"] += reply.cost_usd
        store.usage.add(run_id, role, reply.tokens, reply.cost_usd, scopes)
        enforce_run_budget(store, run_id, settings.budgets.warning_fraction)

    item_id = (scopes or {}).get("item")

    def must_stop() -> bool:
        """Before each model call: the agent's own budget, a shutdown, the run's budget (which an operator may
        have lowered: no call goes beyond it) or end, and an operator's cancel of its item."""
        if max_cost_usd is not None and spent["cost"] >= max_cost_usd:
            return True
        if shutdown_requested() or enforce_run_budget(store, run_id, settings.budgets.warning_fraction):
            return True
        return item_id is not None and store.items.get(item_id).cancel_requested

    loop = AgentLoop(
        model=LiteLLMModel(settings, role), tools=tools, max_steps=max_steps or settings.role(role).max_steps,
        output_limit=settings.tool_output_chars,
        transcript=open_transcript(store, settings, run_id, transcript_name, item_id),
        on_reply=record, should_stop=must_stop, stall_watch=stall_watch,
    )
    try:
        result = loop.run(system, user)
        if result.status == "stopped" and max_cost_usd is not None and spent["cost"] >= max_cost_usd:
            result.status = "cost_limit"
        return result
    except ModelAccessError as exc:
        log.error("run %s: %s", run_id, exc)
        store.runs.end(run_id, RunStatus.FAILED, str(exc))
        return AgentResult(status="stopped", transcript=loop.transcript.path)
