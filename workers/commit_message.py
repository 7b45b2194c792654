"""What a worker's commit says: the item's title, the agent's summary made safe, Cadre's trailers last."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.config.settings import CadreSettings
from orchestrator.git.repo import CommittedWork, commit_work
from orchestrator.landing.trailers import item_trailers
from orchestrator.state.models import HANDOFF_NOTES, WorkItem
from orchestrator.untrusted.text import clean_text, one_line

# Lines of model text that git's own trailer parser could take for Cadre's trailers (or for the `---` that
# ends a message): quoted, so that `git log --format=%(trailers)` reads what Cadre reads.
TRAILER_LIKE = re.compile(r"^(cadre-[\w-]*\s*:|---)", re.IGNORECASE | re.MULTILINE)


def handoff_notes(arguments: dict) -> dict[str, str]:
    """The structured part of the agent's handoff (concerns, deviations, findings, suggestions), cleaned of
    control characters and escape sequences: it reaches prompts, logs and terminals."""
    return {key: clean_text(str(arguments.get(key) or "")) for key in HANDOFF_NOTES}


def commit_message(item: WorkItem, summary: str) -> str:
    """The commit message: the item's title (one line), the agent's summary (cleaned: a NUL would cut the
    message, a control character would reach terminals), and last the trailers naming item and attempt."""
    body = TRAILER_LIKE.sub(r"> \1", clean_text(summary)).strip() or "(no summary)"
    return f"{one_line(item.title) or item.id}\n\n{body}\n\n{item_trailers(item.id, item.attempt)}"


def wip_message(item: WorkItem, reason: str = "") -> str:
    """The message of a work-in-progress commit kept on the rescue branch (`reason`: why the attempt stopped)."""
    stopped = f"Stopped: {one_line(reason, 500)}\n\n" if reason else ""
    return f"WIP: {one_line(item.title)}\n\n{stopped}{item_trailers(item.id, item.attempt)}"


def commit_attempt(settings: CadreSettings, worktree: Path, message: str,
                   artifacts: tuple[str, ...]) -> CommittedWork:
    """Commit what the agent changed, safely (`orchestrator.git.repo.commit_work`), as Cadre's author."""
    return commit_work(worktree, message, settings.git_author_name, settings.git_author_email, exclude=artifacts,
                       max_bytes=settings.max_commit_bytes)
