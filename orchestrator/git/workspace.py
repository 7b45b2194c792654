"""Worktree slots: reusable per-task checkouts carved out of the host's one bare cache.

A slot is a directory `<root>/slots/<cache-name>/<group>-<n>` holding a git worktree of the
cache. A process owns a slot while it holds a non-blocking flock on `<slot>.lock`, so concurrent
processes (and threads) of a host always work in different slots, and a slot outlives its task:
the next task resets it instead of checking out the repository again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.git.cache import BareCache
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


def salvage_unlanded(cache: BareCache, slot: Path) -> str | None:
    """Push commits a previous user left unlanded in `slot` (a killed worker's) to a rescue branch.

    The branch is `cadre/rescue/<item>/<attempt>` from the commit's trailers (with a suffix if that
    branch exists already), or `cadre/rescue/orphan/<sha>`. Returns the branch, or None if nothing
    needed saving. Nothing a worker committed is lost to a slot reset.
    """
    found = unlanded_tip(slot)
    if found is None:
        return None
    sha, message = found
    trailers = dict(re.findall(r"^(Cadre-Item|Cadre-Attempt): (\S+)$", message, re.M))
    if "Cadre-Item" in trailers:
        branch = f"cadre/rescue/{trailers['Cadre-Item']}/{trailers.get('Cadre-Attempt', '0')}"
    else:
        branch = f"cadre/rescue/orphan/{sha[:12]}"
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
def worktree_slot(cache: BareCache, group: str, start_point: str) -> Iterator[Path]:
    """Yield a worktree of `cache` owned by the caller until exit, detached and clean at `start_point`.

    The slot is exclusive to this context (host-wide) and is reused by later contexts; whatever
    the previous user left (commits, edits, untracked or ignored files, a stopped rebase) is
    discarded on entry. The slot lock is released on exit, exceptions included. GitError if
    `start_point` names no commit of the cache.
    """
    if not _GROUP_PATTERN.fullmatch(group):
        raise ValueError(f"invalid slot group {group!r}: use letters, digits, '.', '_' or '-'")
    commit = rev_sha(cache.path, start_point)  # once, so a concurrent fetch cannot move it mid-reset
    with _claim_slot(cache, group) as slot:
        _materialise(cache, slot, commit)
        yield slot
