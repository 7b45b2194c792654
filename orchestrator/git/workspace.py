"""Worktree slots: reusable per-task checkouts carved out of the host's one bare cache.

A slot is a directory `<root>/slots/<cache-name>/<group>-<n>` holding a git worktree of the
cache. A process owns a slot while it holds a non-blocking flock on `<slot>.lock`, so concurrent
processes (and threads) of a host always work in different slots, and a slot outlives its task:
the next task resets it instead of checking out the repository again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.git.cache import BareCache
from orchestrator.git.names import safe_id
from orchestrator.git.repo import push, reset_worktree, rev_sha, unlanded_tip
from orchestrator.git.runner import GitError

logger = logging.getLogger(__name__)

_GROUP_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def prepare_cache(root: Path, url: str) -> BareCache:
    """Return the host's cache of `url` under `root`, created if needed and freshly fetched."""
    cache = BareCache(root, url)
    cache.ensure()
    cache.fetch()
    return cache


def slot_path(cache: BareCache, group: str, index: int) -> Path:
    """Directory of slot number `index` of `group` for `cache` (it may not exist yet)."""
    return cache.root / "slots" / cache.name / f"{group}-{index}"


@contextmanager
def _claim_slot(cache: BareCache, group: str) -> Iterator[Path]:
    """Lock the first free slot of `group` and yield its path; the lock is released on exit.

    Slots are tried in order 0, 1, 2, ... with a non-blocking exclusive flock on `<slot>.lock`.
    Each claim opens its own descriptor, so two claims in one process also exclude each other.
    """
    index = 0
    while True:
        slot = slot_path(cache, group, index)
        slot.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            index += 1
            continue
        except BaseException:
            os.close(fd)
            raise
        break
    try:
        logger.debug("claimed slot %s", slot)
        yield slot
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _discard(slot: Path) -> None:
    """Remove whatever sits at `slot` (stale directory, file or symlink)."""
    if slot.is_dir() and not slot.is_symlink():
        shutil.rmtree(slot)
    elif slot.exists() or slot.is_symlink():
        slot.unlink()


def _owner_record(slot: Path) -> Path:
    return slot.with_name(slot.name + ".owner")


def record_owner(slot: Path, owner: tuple[str, int] | None) -> None:
    """Note (beside the slot, where no agent can write) which item attempt works in the slot now."""
    record = _owner_record(slot)
    if owner is None:
        record.unlink(missing_ok=True)
        return
    record.write_text(json.dumps({"item": safe_id(owner[0], "item id"), "attempt": int(owner[1])}), encoding="utf-8")


def _last_owner(slot: Path) -> tuple[str, int] | None:
    try:
        data = json.loads(_owner_record(slot).read_text(encoding="utf-8"))
        return safe_id(str(data["item"]), "item id"), int(data["attempt"])
    except (OSError, ValueError, KeyError, TypeError, GitError):
        return None


def salvage_unlanded(cache: BareCache, slot: Path) -> str | None:
    """Push commits a previous user left unlanded in `slot` (a killed worker's) to a rescue branch.

    The branch is `cadre/rescue/<item>/<attempt>` of the attempt Cadre recorded as the slot's last owner
    (with a suffix if that branch exists already), or `cadre/rescue/orphan/<sha>`: never a name read from a
    commit message. Returns the branch, or None if nothing needed saving. Nothing a worker committed is lost
    to a slot reset.
    """
    sha = unlanded_tip(slot)
    if sha is None:
        return None
    owner = _last_owner(slot)
    branch = f"cadre/rescue/{owner[0]}/{owner[1]}" if owner else f"cadre/rescue/orphan/{sha[:12]}"
    for candidate in (branch, f"{branch}-{sha[:8]}"):
        if push(slot, cache.url, f"{sha}:refs/heads/{candidate}").ok:
            logger.warning("salvaged unlanded commit %s from slot %s to %s", sha[:12], slot, candidate)
            return candidate
    raise GitError(f"could not salvage unlanded commit {sha[:12]} from slot {slot}")


def _materialise(cache: BareCache, slot: Path, start_point: str) -> None:
    """Make `slot` a clean worktree of `cache` detached at `start_point`, reusing it when possible.

    Unlanded commits left in a reused slot are pushed to a rescue branch before the reset.
    """
    if cache.owns_worktree(slot):
        salvage_unlanded(cache, slot)
        try:
            reset_worktree(slot, start_point)
            return
        except GitError as exc:
            logger.warning("slot %s could not be reset (%s); rebuilding it", slot, exc)
    elif slot.exists() or slot.is_symlink():
        logger.warning("slot %s is not a worktree of %s; rebuilding it", slot, cache.path)
    _discard(slot)
    cache.add_worktree(slot, start_point)


@contextmanager
def worktree_slot(cache: BareCache, group: str, start_point: str,
                  owner: tuple[str, int] | None = None) -> Iterator[Path]:
    """Yield a worktree of `cache` owned by the caller until exit, detached and clean at `start_point`.

    The slot is exclusive to this context (host-wide) and is reused by later contexts; whatever
    the previous user left (commits, edits, untracked or ignored files, symlinks, nested repositories, a
    stopped rebase) is discarded on entry, unlanded commits rescued first. `owner` (item id, attempt) names
    the rescue branch should this context's commits be left unlanded. The slot lock is released on exit,
    exceptions included. GitError if `start_point` names no commit of the cache.
    """
    if not _GROUP_PATTERN.fullmatch(group):
        raise ValueError(f"invalid slot group {group!r}: use letters, digits, '.', '_' or '-'")
    commit = rev_sha(cache.path, start_point)  # once, so a concurrent fetch cannot move it mid-reset
    with _claim_slot(cache, group) as slot:
        _materialise(cache, slot, commit)
        record_owner(slot, owner)
        yield slot
