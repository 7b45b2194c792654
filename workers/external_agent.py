"""Running an external coding-agent program (Claude Code, Codex CLI, aider, mini-swe-agent, ...) as a worker.

The program runs in the worktree, in the sandbox, with its own private folder per attempt (HOME,
config, its prompt, its handoff file, its trajectory), so nothing is shared between concurrent
agents and nothing of it sits in the worktree to be committed. Its own report says how it ended and
what it used; tokens it reports without a cost are priced like the builtin agent's.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

from orchestrator.agent.backends import Preset, agent_env_names, paths_named
from orchestrator.agent.commands import shell_for
from orchestrator.agent.egress import EgressProxy, allowed_hosts
from orchestrator.agent.egress_bridge import ListenerCourier
from orchestrator.agent.loop import AgentResult, truncate
from orchestrator.agent.reports import AgentReport, read_report
from orchestrator.agent.sandbox import Bridge
from orchestrator.config.secrets import scrub
from orchestrator.config.settings import DEMO_MODEL_KEY, CadreSettings
from orchestrator.flow.agent_runs import open_transcript, run_prompts
from orchestrator.flow.budgets import enforce_run_budget
from orchestrator.git.repo import common_git_dir
from orchestrator.queues.shutdown import shutdown_requested
from orchestrator.state.models import HANDOFF_NOTES, Run, WorkItem
from orchestrator.state.store import Store
from workers.agent_watch import AgentWatch
from orchestrator.untrusted.files import read_file
from orchestrator.untrusted.text import clean_text

GIT_MARGIN_SECONDS = 120
MAX_HANDOFF_BYTES = 1_000_000
BRIDGE_PORT = 3128  # inside the agent's own network namespace: nothing else listens there
OUTPUT_TAIL_CHARS = 4000
KEY_VARIABLE = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def read_handoff(handoff_file: Path, report: AgentReport, output: str) -> dict:
    """The agent's handoff file as a dict of cleaned texts (and its `tokens` and `cost_usd` numbers); without
    a readable one, its own last words (or its output's tail). The file is read through the one door for
    hostile input: a symlink, a FIFO or more than `MAX_HANDOFF_BYTES` is no handoff at all."""
    try:
        data = json.loads(read_file(handoff_file, MAX_HANDOFF_BYTES))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("summary"), str) and data["summary"].strip():
        handoff = {key: clean_text(str(data.get(key) or "")) for key in ("summary", *HANDOFF_NOTES)}
        for key in ("tokens", "cost_usd"):
            if isinstance(data.get(key), int | float) and not isinstance(data.get(key), bool) and data[key] >= 0:
                handoff[key] = data[key]
        return handoff
    if report.summary.strip():
        return {"summary": clean_text(report.summary).strip()}
    return {"summary": "(no handoff file; tail of the agent's output)\n" + clean_text(output)[-OUTPUT_TAIL_CHARS:]}


def template_values(settings: CadreSettings, io_dir: Path, home: Path, prompt: str, preset: Preset) -> dict[str, str]:
    """What the preset's placeholders stand for in this attempt."""
    litellm_model = settings.model_for("worker")
    return {"prompt": prompt, "prompt_file": str(io_dir / "prompt.md"), "handoff_file": str(io_dir / "handoff.json"),
            "io_dir": str(io_dir), "home": str(home), "litellm_model": litellm_model,
            "model": litellm_model.split("/", 1)[-1] if preset.strip_provider else litellm_model,
            "api_base": settings.api_base_for("worker") or "", "max_steps": str(settings.role("worker").max_steps),
            "max_cost": f"{settings.budgets.item_max_cost_usd or 0:g}"}


def proxy_env(port: int) -> dict[str, str]:
    """What makes an agent's HTTP clients use the egress bridge (both spellings: programs read either)."""
    url = f"http://127.0.0.1:{port}"
    return {"HTTPS_PROXY": url, "HTTP_PROXY": url, "https_proxy": url, "http_proxy": url, "NO_PROXY": "",
            "no_proxy": ""}


def model_key_env(settings: CadreSettings) -> dict[str, str]:
    """The worker model's key under its provider's variable (OPENAI_API_KEY...), when Cadre holds it."""
    key = DEMO_MODEL_KEY if settings.uses_demo_model("worker") else (
        settings.api_key.get_secret_value() if settings.api_key else "")
    variable = KEY_VARIABLE.get(settings.model_for("worker").split("/", 1)[0])
    return {variable: key} if key and variable else {}


def write_model_metadata(settings: CadreSettings, path: Path) -> None:
    """litellm's model-metadata file (for aider): the configured price of the worker model, if any."""
    model, price = settings.model_for("worker"), settings.role("worker").price_per_mtok
    metadata = {} if price is None else {model: {
        "input_cost_per_token": price[0] / 1_000_000, "output_cost_per_token": price[1] / 1_000_000,
        "litellm_provider": model.split("/", 1)[0], "mode": "chat", "max_tokens": 8192}}
    path.write_text(json.dumps(metadata), encoding="utf-8")


def priced(settings: CadreSettings, report: AgentReport) -> float:
    """The report's cost, or, when it gave tokens only, their price (configured, else litellm's table, else 0)."""
    if report.cost_usd is not None:
        return report.cost_usd
    price = settings.role("worker").price_per_mtok
    from orchestrator.agent.model_access import price_tokens, table_cost  # litellm's import is slow

    if price is not None:
        return price_tokens(price, report.prompt_tokens, report.completion_tokens)
    return table_cost(settings.model_for("worker"), report.prompt_tokens, report.completion_tokens) or 0.0


def run_external_agent(store: Store, settings: CadreSettings, run: Run, item: WorkItem, worktree: Path,
                       preset: Preset, variables: dict) -> AgentResult:
    """Run the program in the worktree; status `finished`, `limit` (its own limit or Cadre's time limit),
    `failed`, or `stopped` (the worker is shutting down)."""
    io_dir = settings.data_dir / "agent-io" / run.id / f"{item.id}-{item.attempt}"
    home = io_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    prompts = run_prompts(settings, run, worktree)
    handoff_file = io_dir / "handoff.json"
    handoff_file.unlink(missing_ok=True)
    prompt = scrub(prompts.render("worker", "external_task", handoff_file=str(handoff_file),
                                  task=prompts.render("worker", "task", **variables), **variables))
    (io_dir / "prompt.md").write_text(prompt, encoding="utf-8")
    write_model_metadata(settings, io_dir / "model-metadata.json")
    values = template_values(settings, io_dir, home, prompt, preset)
    argv = preset.argv(values, api_base=bool(values["api_base"]), budget=bool(settings.budgets.item_max_cost_usd))
    env = {**preset.environment(values, api_base=bool(values["api_base"])), **model_key_env(settings)}
    transcript = open_transcript(store, settings, run.id, f"worker-{item.id}-{item.attempt}", item.id)
    transcript.write("user", content=prompt)
    transcript.write("command", argv=[truncate(word, 200) for word in argv])
    with AgentWatch(store, item.id, worktree, io_dir / "output.log", settings.stall_seconds) as watch:
        code, output = _run_program(settings, preset, worktree, io_dir, home, argv, env, transcript, watch.stop)
    report = read_report(preset.report, code, output, io_dir)
    handoff = read_handoff(handoff_file, report, output)
    prompt_tokens, completion_tokens, cost = report.prompt_tokens, report.completion_tokens, priced(settings, report)
    reported = report.reported or "tokens" in handoff or "cost_usd" in handoff
    if not report.reported and reported:  # only its handoff says what it used
        prompt_tokens, completion_tokens = 0, int(handoff.get("tokens") or 0)
        cost = float(handoff.get("cost_usd") or 0.0)
    tokens = prompt_tokens + completion_tokens
    store.usage.add(run.id, "worker", tokens, cost, {"cycle": str(item.cycle), "node": item.node_id,
                                                     "item": item.id}, reported=reported)
    enforce_run_budget(store, run.id, settings.budgets.warning_fraction)
    status, detail = ("stalled", watch.stalled) if watch.stalled else _status(code, report, watch.stop.is_set())
    transcript.write("output", exit_code=code, output=truncate(clean_text(output), settings.tool_output_chars))
    transcript.write("end", status=status, detail=detail, tokens=tokens, cost_usd=cost, usage_reported=reported)
    transcript.close()
    if status in {"failed", "limit"}:
        handoff["summary"] = f"agent {'stopped at ' if status == 'limit' else 'failed: '}{detail}: {handoff['summary']}"
    return AgentResult(status=status, final_tool="handoff", final_arguments=handoff, steps=1,
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                       transcript=transcript.path, detail=detail, usage_reported=reported)


def _run_program(settings: CadreSettings, preset: Preset, worktree: Path, io_dir: Path, home: Path, argv: list[str],
                 env: dict[str, str], transcript, stop: threading.Event) -> tuple[int | None, str]:
    """Run the agent program in the sandbox, its only way out the egress proxy (started for it, stopped after);
    with `CADRE_SANDBOX=off`, a plain process on the host's network."""
    timeout = max(settings.role("worker").time_limit_seconds - GIT_MARGIN_SECONDS, 30)
    shell_options = dict(readable=(common_git_dir(worktree), *paths_named(preset)), writable=(io_dir,),
                         env_names=agent_env_names(preset, settings), home=str(home))
    if settings.sandbox.mode == "off":
        return shell_for(settings, worktree, extra_env=env, **shell_options).run(argv, timeout, stop,
                                                                                 io_dir / "output.log")
    allowed = allowed_hosts(settings.api_base_for("worker"), settings.model_for("worker"), settings.agent_allowed_hosts)
    with tempfile.TemporaryDirectory(prefix="cadre-egress-") as folder, \
            EgressProxy(Path(folder) / "proxy.sock", allowed) as proxy, \
            ListenerCourier(Path(folder) / "bridge.sock", BRIDGE_PORT, proxy):
        shell = shell_for(settings, worktree, extra_env=env | proxy_env(BRIDGE_PORT),
                          bridge=Bridge(BRIDGE_PORT, Path(folder) / "bridge.sock"), **shell_options)
        code, output = shell.run(argv, timeout, stop, io_dir / "output.log")
    if proxy.denied:
        transcript.write("egress_refused", hosts=sorted(set(proxy.denied))[:20])
    return code, output


def _status(code: int | None, report: AgentReport, stopped: bool) -> tuple[str, str]:
    if code is None:
        if shutdown_requested():
            return "stopped", "worker shutting down"
        return ("stopped", "cancelled by an operator") if stopped else ("limit", "Cadre's time limit")
    return report.outcome, report.detail
