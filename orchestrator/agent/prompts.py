"""Prompt templates: one folder per role under `prompts/`, rendered strictly (a missing variable is an error).

Overrides come from two places, first match wins: the operator's folder (`CADRE_PROMPTS_DIR`), then
the repository's `.cadre/prompts/<role>/<name>.j2` as of the run's starting commit (never from the
branch tip workers write to during the run). Every template renders in jinja2's sandboxed
environment, so a repository's template cannot reach Python; one that tries is refused and the
shipped template is used instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = logging.getLogger(__name__)
REPOSITORY_PROMPTS = ".cadre/prompts"


def _environment(loader) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(loader=loader, undefined=StrictUndefined, keep_trailing_newline=True,
                                         trim_blocks=True, lstrip_blocks=True, autoescape=False)


@lru_cache(maxsize=1)
def _shipped() -> ImmutableSandboxedEnvironment:
    return _environment(FileSystemLoader(str(files("prompts"))))


class Prompts:
    """The templates of one run: shipped ones, overridden by the operator's folder and the repository's files."""

    def __init__(self, repository_files: Mapping[str, str] | None = None, operator_dir: Path | None = None):
        """`repository_files` maps `<role>/<name>.j2` to its text (from `.cadre/prompts` at the starting commit)."""
        loaders = []
        if operator_dir is not None:
            loaders.append(FileSystemLoader(str(operator_dir)))
        if repository_files:
            loaders.append(DictLoader(dict(repository_files)))
        self._overrides = _environment(ChoiceLoader(loaders)) if loaders else None

    def render(self, role: str, name: str, **variables) -> str:
        """Render `<role>/<name>.j2` (an override if there is one); jinja2 raises on any undefined variable."""
        template_name = f"{role}/{name}.j2"
        if self._overrides is not None and template_name in self._overrides.list_templates():
            try:
                return self._overrides.get_template(template_name).render(**variables).strip() + "\n"
            except SecurityError as exc:
                log.warning("prompt override %s refused (%s); using Cadre's own", template_name, exc)
        return _shipped().get_template(template_name).render(**variables).strip() + "\n"


SHIPPED = Prompts()


def render(role: str, name: str, **variables) -> str:
    """Render Cadre's own `<role>/<name>.j2`."""
    return SHIPPED.render(role, name, **variables)
