"""Worker agent backends: the builtin tool loop, or an external coding-agent program.

An external agent runs in the worktree with the task prompt (a file, or an argument), in its own
process group under the item's time limit. Cadre does all git before and after it; the agent is
asked to write its handoff as JSON to a file (fallback: the tail of its output).
"""

from __future__ import annotations

import shlex
import shutil

from orchestrator.config.settings import CadreSettings

BUILTIN = "builtin"
COMMAND = "command"
# Placeholders: {prompt_file} {prompt} {handoff_file} {model}. A template is split like a shell
# line, then each word is formatted, so a prompt with spaces stays one argument. No shell runs.
PRESETS: dict[str, str] = {
    "claude-code": "claude --print --dangerously-skip-permissions --output-format json {prompt}",
    "codex": "codex exec --full-auto --skip-git-repo-check {prompt}",
    "aider": "aider --yes-always --no-auto-commits --no-dirty-commits --no-gitignore --message-file {prompt_file}",
    "mini-swe-agent": "mini --yolo --exit-immediately --task {prompt}",
}
# The only variables of the worker's environment an external agent sees (in its sandbox): what its
# backend needs to reach its model. CADRE_WORKER_AGENT_ENV adds names for any backend.
PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
PRESET_ENV: dict[str, tuple[str, ...]] = {
    "claude-code": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL"),
    "codex": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "aider": PROVIDER_ENV,
    "mini-swe-agent": PROVIDER_ENV,
    COMMAND: (),
}
BACKENDS = (BUILTIN, *PRESETS, COMMAND)


class BackendUnavailable(ValueError):
    """A worker backend that is unknown, unconfigured, or whose program is not installed (one line)."""


def command_template(name: str, settings: CadreSettings) -> str | None:
    """The command template of backend `name` (None for the builtin loop); BackendUnavailable if unknown."""
    if name == BUILTIN:
        return None
    if name == COMMAND:
        if not settings.worker_command:
            raise BackendUnavailable("the command backend needs CADRE_WORKER_COMMAND (a template with {prompt_file})")
        return settings.worker_command
    if name not in PRESETS:
        raise BackendUnavailable(f"unknown worker backend {name!r}: use one of {', '.join(BACKENDS)}")
    return settings.worker_command if settings.worker_command and name == settings.worker_backend else PRESETS[name]


def check_backend(name: str, settings: CadreSettings) -> None:
    """Raise BackendUnavailable (one line) unless backend `name` can run on this machine."""
    template = command_template(name, settings)
    if template is None:
        return
    program = shlex.split(template)[0]
    if shutil.which(program) is None:
        raise BackendUnavailable(f"worker backend {name} needs the program {program!r}, which is not on PATH")


def agent_env_names(name: str, settings: CadreSettings) -> tuple[str, ...]:
    """Names of the worker's environment variables backend `name`'s program may see."""
    return (*PRESET_ENV.get(name, ()), *settings.worker_agent_env)


def agent_command(template: str, prompt_file: str, prompt: str, handoff_file: str, model: str) -> list[str]:
    """The argv of an external agent: the template's words with placeholders filled in."""
    values = {"prompt_file": prompt_file, "prompt": prompt, "handoff_file": handoff_file, "model": model}
    return [word.format(**values) for word in shlex.split(template)]
