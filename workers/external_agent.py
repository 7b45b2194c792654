"""Running an external coding-agent program (Claude Code, Codex CLI, Aider, mini-swe-agent, ...) as a worker."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.agent.backends import agent_command, agent_env_names
from orchestrator.agent.commands import shell_for
from orchestrator.agent.loop import AgentResult, Transcript, truncate
from orchestrator.config.secrets import scrub
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import run_prompts, transcript_path
from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.git.repo import common_git_dir
from orchestrator.queues.shutdown import shutdown_event, shutdown_requested
from orchestrator.state.models import Run, WorkItem
from orchestrator.state.store import Store

GIT_MARGIN_SECONDS = 120
OUTPUT_TAIL_CHARS = 4000


def reported_usage(output: str, handoff: dict) -> tuple[int, float, bool]:
    """(tokens, cost, reported): what the agent itself said it used, in its handoff or JSON output."""
    if "tokens" in handoff or "cost_usd" in handoff:
        return int(handoff.get("tokens") or 0), float(handoff.get("cost_usd") or 0.0), True
    try:
        data = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    except (json.JSONDecodeError, IndexError):
        return 0, 0.0, False
    if not isinstance(data, dict) or "total_cost_usd" not in data:
        return 0, 0.0, False
    usage = data.get("usage") or {}
    tokens = int(usage.get("input_tokens", 0) or 0) + int(usage.get("output_tokens", 0) or 0)
    return tokens, float(data["total_cost_usd"] or 0.0), True


def read_handoff(handoff_file: Path, output: str) -> dict:
    """The agent's handoff file as a dict; without a readable one, the tail of its output as the summary."""
    if handoff_file.is_file():
        try:
            data = json.loads(handoff_file.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("summary"):
                return data
        except json.JSONDecodeError:
            pass
    return {"summary": "(no handoff file; tail of the agent's output)\n" + output[-OUTPUT_TAIL_CHARS:]}


def run_external_agent(store: Store, settings: CadreSettings, run: Run, item: WorkItem, worktree: Path,
                       template: str, variables: dict) -> AgentResult:
    """Run the program in the worktree; status `finished` (exit 0), `failed` or `stopped` (killed)."""
    io_dir = settings.data_dir / "agent-io" / run.id / f"{item.id}-{item.attempt}"
    home = io_dir / "home"  # a private HOME per attempt: nothing shared between concurrent agents
    home.mkdir(parents=True, exist_ok=True)
    handoff_file, prompt_file = io_dir / "handoff.json", io_dir / "prompt.md"
    handoff_file.unlink(missing_ok=True)
    prompts = run_prompts(settings, run, worktree)
    prompt = prompts.render("worker", "external_handoff", handoff_file=str(handoff_file),
                            system=prompts.render("worker", "system", **variables),
                            task=prompts.render("worker", "task", **variables))
    prompt = scrub(prompt)
    prompt_file.write_text(prompt, encoding="utf-8")
    argv = agent_command(template, str(prompt_file), prompt, str(handoff_file), settings.worker_model or "")
    transcript = Transcript(transcript_path(run.id, f"worker-{item.id}-{item.attempt}"))
    transcript.write("user", content=prompt)
    transcript.write("command", argv=[truncate(word, 200) for word in argv])
    timeout = max(settings.worker_time_limit_seconds - GIT_MARGIN_SECONDS, 30)
    shell = shell_for(settings, worktree, readable=(common_git_dir(worktree),), writable=(io_dir,),
                      env_names=agent_env_names(run.worker_backend, settings), network=True, home=str(home))
    code, output = shell.run(argv, timeout, shutdown_event())
    handoff = read_handoff(handoff_file, output)
    tokens, cost, reported = reported_usage(output, handoff)
    store.usage.add(run.id, "worker", tokens, cost, {"cycle": str(item.cycle), "node": item.node_id,
                                                     "item": item.id}, reported=reported)
    enforce_run_budget(store, run.id, settings.budget_warning_fraction)
    status = "finished" if code == 0 else ("stopped" if code is None and shutdown_requested() else "failed")
    transcript.write("output", exit_code=code, output=truncate(output, settings.tool_output_chars))
    transcript.write("end", status=status, tokens=tokens, cost_usd=cost, usage_reported=reported)
    transcript.close()
    if status == "failed":
        handoff["summary"] = f"agent exited {code if code is not None else 'on its time limit'}: {handoff['summary']}"
    return AgentResult(status=status, final_tool="handoff", final_arguments=handoff, steps=1,
                       completion_tokens=tokens, cost_usd=cost, transcript=transcript.path)
