"""The trailers that name a commit's work item and attempt: built from Cadre's own records only, and read
back only from the very end of a message, where Cadre wrote them.

A commit message is the item's title, the agent's summary (model text, cleaned) and then Cadre's trailer
block, last. Git's own trailer parser would also take a block the model put before a `---` line, and
libgit2 would cut a message at a NUL; so Cadre never asks git which trailers a commit has: it matches its
own block at the end of the raw message, and only ids of the strict shape Cadre gives them.
"""

from __future__ import annotations

import re

from orchestrator.git.names import SAFE_ID, safe_id
from orchestrator.git.objects import commit_messages
from orchestrator.git.runner import PathArg

ITEM_TRAILER = "Cadre-Item"
ATTEMPT_TRAILER = "Cadre-Attempt"
# How far back a scan looks: further than any batch of landings between two fetches.
SCAN_COMMITS = 2000
_TAIL = re.compile(rf"\n\n{ITEM_TRAILER}: ({SAFE_ID.pattern})(?:\n{ATTEMPT_TRAILER}: (\d{{1,6}}))?\n*\Z")


def item_trailers(item_id: str, attempt: int) -> str:
    """The trailer block that ends every commit of an attempt, naming its work item and attempt."""
    return f"{ITEM_TRAILER}: {safe_id(item_id, 'item id')}\n{ATTEMPT_TRAILER}: {int(attempt)}\n"


def item_of_message(message: str) -> tuple[str, int | None] | None:
    """(item id, attempt or None) from the trailer block that ends `message`, or None if it has none."""
    found = _TAIL.search(message)
    if found is None or ".." in found.group(1):
        return None
    return found.group(1), int(found.group(2)) if found.group(2) else None


def landed_commit(path: PathArg, rev: str, item_id: str) -> str | None:
    """The commit reachable from `rev` whose trailer block names the item (it has landed), or None."""
    return landed_items(path, rev).get(item_id)


def landed_items(path: PathArg, tip: str, max_count: int = SCAN_COMMITS) -> dict[str, str]:
    """`{item id: commit}` for the last `max_count` commits reachable from `tip` that end with Cadre's trailer
    block; the newest commit wins when an item appears twice. In-process, one walk."""
    found: dict[str, str] = {}
    for sha, message in commit_messages(path, tip, max_count):
        named = item_of_message(message)
        if named is not None:
            found.setdefault(named[0], sha)
    return found
