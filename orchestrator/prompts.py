"""Prompt templates: one folder per role under `prompts/`, rendered strictly (a missing variable is an error)."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from jinja2 import Environment, FileSystemLoader, StrictUndefined


@lru_cache(maxsize=1)
def _environment() -> Environment:
    root = str(files("prompts"))
    return Environment(loader=FileSystemLoader(root), undefined=StrictUndefined, keep_trailing_newline=True,
                       trim_blocks=True, lstrip_blocks=True, autoescape=False)


def render(role: str, name: str, **variables) -> str:
    """Render `prompts/<role>/<name>.j2` with `variables`; jinja2 raises on any undefined variable."""
    return _environment().get_template(f"{role}/{name}.j2").render(**variables).strip() + "\n"
