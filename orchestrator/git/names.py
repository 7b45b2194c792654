"""The shape of the ids Cadre puts in reference names and commit trailers (items, attempts)."""

from __future__ import annotations

import re

from orchestrator.git.runner import GitError

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def safe_id(value: str, what: str = "id") -> str:
    """`value` if it has the shape of a Cadre id (letters, digits, `.`, `_`, `-`; no `..`), else GitError."""
    if not SAFE_ID.fullmatch(value) or ".." in value:
        raise GitError(f"invalid {what}: {value[:40]!r}")
    return value
