"""Worker agent backends: the builtin tool loop, or an external coding-agent program.

An external agent runs in the worktree, in the sandbox, with the task prompt (an argument or a
file), a private HOME and config folder per attempt, and the worker's model passed its own way.
Cadre does all git before and after it; the agent writes its handoff as JSON to a file outside the
worktree, and its own report (Claude Code's JSON result, Codex's JSON events, aider's token lines,
mini-swe-agent's trajectory) says how it ended and what it used.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.agent.commands import shell_for
from orchestrator.config.settings import CadreSettings

BUILTIN = "builtin"
COMMAND = "command"
PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")


@dataclass(frozen=True)
class Preset:
    """How to run one agent program unattended. Every word of `args` and value of `env` is a template:

    {prompt} {prompt_file} {handoff_file} {io_dir} {home} the attempt's prompt, files and private folders;
    {model} the model as the agent names it; {litellm_model} as litellm names it; {api_base} {max_steps}
    {max_cost} (0: none). `api_base_args` are added only when the worker model has an API base,
    `budget_args` only when the item has a cost budget, then `prompt_args` come last. `artifacts` are the files it leaves in the
    worktree that Cadre never commits; `report` names the parser of its own report (`agent.reports`).
    """

    program: str
    args: tuple[str, ...]
    prompt_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = PROVIDER_ENV
    api_base_args: tuple[str, ...] = ()
    api_base_env: dict[str, str] = field(default_factory=dict)
    budget_args: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    report: str = "handoff"
    strip_provider: bool = False

    def argv(self, values: dict[str, str], api_base: bool, budget: bool) -> list[str]:
        """The program and its arguments: `args`, the optional ones that apply, then `prompt_args`."""
        words = [*self.args, *(self.api_base_args if api_base else ()), *(self.budget_args if budget else ()),
                 *self.prompt_args]
        return [self.program, *(word.format(**values) for word in words)]

    def environment(self, values: dict[str, str], api_base: bool) -> dict[str, str]:
        env = {**self.env, **(self.api_base_env if api_base else {})}
        return {name: value.format(**values) for name, value in env.items()}


PRESETS: dict[str, Preset] = {
    "claude-code": Preset(
        program="claude",
        args=("--output-format", "json", "--model", "{model}", "--max-turns", "{max_steps}",
              "--dangerously-skip-permissions"),
        prompt_args=("-p", "{prompt}"),
        env={"CLAUDE_CONFIG_DIR": "{home}/.claude", "IS_SANDBOX": "1", "DISABLE_AUTOUPDATER": "1",
             "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
        pass_env=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"),
        api_base_env={"ANTHROPIC_BASE_URL": "{api_base}"},
        budget_args=("--max-budget-usd", "{max_cost}"),
        artifacts=(".claude/settings.local.json",), report="claude-json", strip_provider=True),
    "codex": Preset(
        program="codex",
        args=("exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
              "--color", "never", "-m", "{model}"),
        prompt_args=("{prompt}",),
        env={"CODEX_HOME": "{home}/.codex"},
        pass_env=("OPENAI_API_KEY", "CODEX_API_KEY"),
        api_base_args=("-c", "model_provider=cadre", "-c", "model_providers.cadre.name=cadre",
                       "-c", "model_providers.cadre.base_url={api_base}", "-c", "model_providers.cadre.wire_api=responses",
                       "-c", "model_providers.cadre.env_key=OPENAI_API_KEY"),
        report="codex-jsonl", strip_provider=True),
    "aider": Preset(
        program="aider",
        args=("--model", "{litellm_model}", "--yes-always", "--no-auto-commits", "--no-dirty-commits", "--no-git",
              "--no-gitignore", "--analytics-disable", "--no-check-update", "--no-show-model-warnings",
              "--no-show-release-notes", "--no-pretty", "--no-stream", "--no-fancy-input", "--map-tokens", "0",
              "--chat-history-file", "{io_dir}/aider.chat.history.md", "--input-history-file",
              "{io_dir}/aider.input.history", "--model-metadata-file", "{io_dir}/model-metadata.json"),
        prompt_args=("--message-file", "{prompt_file}"),
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        api_base_args=("--openai-api-base", "{api_base}"),
        artifacts=(".aider*",), report="aider-lines"),
    "mini-swe-agent": Preset(
        program="mini",
        args=("-m", "{litellm_model}", "-y", "--exit-immediately", "-o", "{io_dir}/trajectory.json",
              "-l", "{max_cost}", "-c", "mini.yaml", "-c", "agent.step_limit={max_steps}"),
        prompt_args=("-t", "{prompt}"),
        env={"MSWEA_CONFIGURED": "true", "MSWEA_SILENT_STARTUP": "1", "MSWEA_COST_TRACKING": "ignore_errors",
             "MSWEA_GLOBAL_CONFIG_DIR": "{home}/.config/mini-swe-agent", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        api_base_args=("-c", "model.model_kwargs.api_base={api_base}"),
        report="mini-trajectory"),
}
BACKENDS = (BUILTIN, *PRESETS, COMMAND)
# Inside the sandbox: is the program there, and the interpreter its `#!` line names? (Run nothing of it.)
PROGRAM_PROBE = ('found=$(command -v "$0") || { echo "$0: not found"; exit 127; }; '
                 "interpreter=$(sed -n '1s/^#![[:space:]]*\\([^[:space:]]*\\).*/\\1/p' \"$found\" 2>/dev/null); "
                 '[ -z "$interpreter" ] || [ -x "$interpreter" ] || { echo "$interpreter: not found"; exit 127; }')


class BackendUnavailable(ValueError):
    """A worker backend that is unknown, unconfigured, or whose program is not installed (one line)."""


def preset_for(name: str, settings: CadreSettings) -> Preset | None:
    """The preset of backend `name` (None for the builtin loop); BackendUnavailable if unknown.

    The `command` backend is `CADRE_WORKER_COMMAND` (placeholders as in `Preset`), reporting through its
    handoff file only.
    """
    if name == BUILTIN:
        return None
    if name == COMMAND:
        if not settings.worker_command:
            raise BackendUnavailable("the command backend needs CADRE_WORKER_COMMAND (a template with {prompt_file})")
        words = tuple(shlex.split(settings.worker_command))
        return Preset(program=words[0], args=words[1:], pass_env=(), report="handoff")
    if name not in PRESETS:
        raise BackendUnavailable(f"unknown worker backend {name!r}: use one of {', '.join(BACKENDS)}")
    return PRESETS[name]


def check_backend(name: str, settings: CadreSettings) -> None:
    """Raise BackendUnavailable (one line) unless backend `name` can run on this machine."""
    preset = preset_for(name, settings)
    if preset is not None and shutil.which(preset.program) is None:
        raise BackendUnavailable(f"worker backend {name} needs the program {preset.program!r}, which is not on PATH")


def check_backend_in_sandbox(name: str, settings: CadreSettings, probe_dir: Path) -> None:
    """Raise BackendUnavailable (one line, with the fix) unless backend `name`'s program starts inside the
    sandbox, as it will for every item (a program whose interpreter the sandbox does not show fails there)."""
    preset = preset_for(name, settings)
    if preset is None or settings.sandbox.mode == "off":
        return
    probe_dir.mkdir(parents=True, exist_ok=True)
    program = shutil.which(preset.program) or preset.program
    code, output = shell_for(settings, probe_dir, readable=paths_named(preset)).run(["sh", "-c", PROGRAM_PROBE, program], 60)
    if code in (126, 127):
        line = next((ln for ln in reversed(output.splitlines()) if ln.strip()), f"exit code {code}")
        raise BackendUnavailable(f"worker backend {name}: {program} does not start inside the agent sandbox ({line}): "
                                 "install it (and its interpreter) in a system folder or a virtualenv on PATH, or "
                                 "make its folder readable with CADRE_SANDBOX_READABLE")


def paths_named(preset: Preset) -> tuple[Path, ...]:
    """Absolute paths the operator wrote into the agent's own command line (`/opt/agent/run.py`,
    `--config=/etc/agent.toml`) that exist here: readable inside the sandbox, whose private /tmp would
    otherwise hide a script kept under /tmp. Placeholders (filled in per attempt) are not paths named."""
    named = []
    for word in preset.args:
        value = word.partition("=")[2] if word.startswith("-") else word
        if "{" not in value and value.startswith("/") and Path(value).exists():
            named.append(Path(value))
    return tuple(dict.fromkeys(named))


def agent_env_names(preset: Preset, settings: CadreSettings) -> tuple[str, ...]:
    """Names of the worker's environment variables the agent may see: its backend's and CADRE_WORKER_AGENT_ENV."""
    return (*preset.pass_env, *settings.worker_agent_env)


def artifact_patterns(preset: Preset | None, settings: CadreSettings) -> tuple[str, ...]:
    """Glob patterns (relative to the worktree) of what an agent leaves behind that is never committed."""
    return (*(preset.artifacts if preset else ()), *settings.worker_artifacts)
