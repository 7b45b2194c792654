"""Prompt templates: one folder per role under `prompts/`, rendered strictly (a missing variable is an error).

A target repository may override any template with its own file at `.cadre/prompts/<role>/<name>.j2`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

REPOSITORY_PROMPTS = Path(".cadre") / "prompts"


def _environment_options() -> dict:
    return dict(undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                autoescape=False)


@lru_cache(maxsize=1)
def _shipped() -> Environment:
    return Environment(loader=FileSystemLoader(str(files("prompts"))), **_environment_options())


def _environment(repository: Path | None) -> Environment:
    if repository is None or not (repository / REPOSITORY_PROMPTS).is_dir():
        return _shipped()
    loader = ChoiceLoader([FileSystemLoader(str(repository / REPOSITORY_PROMPTS)), _shipped().loader])
    return Environment(loader=loader, **_environment_options())


def render(role: str, name: str, repository: Path | None = None, **variables) -> str:
    """Render `<role>/<name>.j2`, from the repository's `.cadre/prompts` if it has one, else Cadre's own.

    jinja2 raises on any undefined variable.
    """
    return _environment(repository).get_template(f"{role}/{name}.j2").render(**variables).strip() + "\n"
