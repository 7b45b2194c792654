"""The landing queue (`CADRE_INTEGRATION=queue`): one lander per branch lands commits by plumbing.

A worker pushes its commit to a unique ref, `refs/cadre/pending/<item>/<attempt>`, queues a request
in Redis and waits for the answer: landed (with the commit on the branch) or conflict (with the
paths). Whoever holds the branch's lander lock (SET NX with a TTL, so exactly one at a time across
machines) drains the queue: it merges each commit onto the current tip with `merge-tree`, replays
it with `commit-tree` (author and message kept), and moves the branch with one compare-and-swap
push per batch, at most one push per `CADRE_LAND_PUSH_INTERVAL_SECONDS`. The lander never edits
code: a conflicting item is answered once, and its worker rebases, resolves and resubmits.

Crash safety: a request stays in the `processing` list until answered; a new lander puts
unanswered requests back first, and an item whose trailer is already on the branch is answered
"landed" with that commit, so a lander killed mid-batch loses nothing and lands nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field

from orchestrator.git.cache import BareCache
from orchestrator.git.plumbing import (
    fetch_ref,
    has_commit,
    merge_onto,
    push_if_unchanged,
    replay_commit,
)
from orchestrator.git.repo import push, trailer_commits
from orchestrator.state.store import Store
from workers.integrate import ITEM_TRAILER

log = logging.getLogger(__name__)
BATCH_SIZE = 64
LOCK_SECONDS = 60
ANSWER_TTL_SECONDS = 3600


@dataclass(frozen=True)
class LandingRequest:
    item_id: str
    attempt: int
    commit: str
    ref: str


@dataclass(frozen=True)
class LandingAnswer:
    status: str  # landed | conflict | stale | timeout
    commit: str | None = None
    conflicted_paths: list[str] = field(default_factory=list)


def queue_key(url: str, branch: str) -> str:
    """The Redis key prefix of the landing queue of one branch of one repository."""
    return "cadre:land:" + hashlib.sha256(f"{url}\n{branch}".encode()).hexdigest()[:16]


def pending_ref(item_id: str, attempt: int) -> str:
    return f"refs/cadre/pending/{item_id}/{attempt}"


def _answer_key(item_id: str, attempt: int) -> str:
    return f"cadre:land:answer:{item_id}:{attempt}"


def submit(store: Store, cache: BareCache, worktree, branch: str, item_id: str, attempt: int, commit: str,
           push_interval: float, timeout: float = 900) -> LandingAnswer:
    """Hand the worktree's HEAD to the branch's lander and wait for its answer (landing it ourselves
    whenever nobody holds the lander lock)."""
    ref = pending_ref(item_id, attempt)
    if not push(worktree, cache.url, f"+HEAD:{ref}").ok:
        raise RuntimeError(f"could not push {ref}")
    key = queue_key(cache.public_url, branch)
    store.redis.delete(_answer_key(item_id, attempt))
    store.redis.rpush(f"{key}:queue", json.dumps(asdict(LandingRequest(item_id, attempt, commit, ref))))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        Lander(store, cache, branch, push_interval).drain_if_free()
        answered = store.redis.blpop([_answer_key(item_id, attempt)], timeout=1)
        if answered is not None:
            return LandingAnswer(**json.loads(answered[1]))
    return LandingAnswer(status="timeout")


class Lander:
    """Drains one branch's landing queue while holding its lock."""

    def __init__(self, store: Store, cache: BareCache, branch: str, push_interval: float = 0.0):
        self.store, self.cache, self.branch, self.push_interval = store, cache, branch, push_interval
        self.key = queue_key(cache.public_url, branch)
        self.token = uuid.uuid4().hex

    def drain_if_free(self) -> int:
        """Become the lander if nobody is, land everything queued, step down; returns items answered."""
        if not self.store.redis.set(f"{self.key}:lock", self.token, nx=True, ex=LOCK_SECONDS):
            return 0
        try:
            self._requeue_unanswered()
            answered = 0
            while batch := self._take_batch():
                answered += self._land_batch(batch)
                self.store.redis.set(f"{self.key}:lock", self.token, xx=True, ex=LOCK_SECONDS)
            return answered
        finally:
            if self.store.redis.get(f"{self.key}:lock") == self.token:
                self.store.redis.delete(f"{self.key}:lock")

    def _requeue_unanswered(self) -> None:
        # A previous lander died mid-batch: its requests go back to the front, in order.
        while self.store.redis.lmove(f"{self.key}:processing", f"{self.key}:queue", "RIGHT", "LEFT"):
            pass

    def _take_batch(self) -> list[LandingRequest]:
        raws = [self.store.redis.lmove(f"{self.key}:queue", f"{self.key}:processing", "LEFT", "RIGHT")
                for _ in range(BATCH_SIZE)]
        return [LandingRequest(**json.loads(raw)) for raw in raws if raw is not None]

    def _land_batch(self, batch: list[LandingRequest]) -> int:
        """Land a batch onto the tip with one CAS push; on an outside push, refetch and redo it."""
        while True:
            self.cache.fetch()
            tip = self.cache.head(self.branch)
            new_tip, answers = tip, []
            landed_items = trailer_commits(self.cache.path, tip, ITEM_TRAILER)  # one scan per batch, kept up to date below
            for request in batch:
                answer, new_tip = self._land_one(request, new_tip, landed_items)
                answers.append((request, answer))
            if new_tip == tip or self._push(new_tip, tip):
                break
            log.info("branch %s moved under the lander; redoing a batch of %s", self.branch, len(batch))
        pipe = self.store.redis.pipeline(transaction=True)
        for request, answer in answers:
            pipe.rpush(_answer_key(request.item_id, request.attempt), json.dumps(asdict(answer)))
            pipe.expire(_answer_key(request.item_id, request.attempt), ANSWER_TTL_SECONDS)
        pipe.delete(f"{self.key}:processing")
        pipe.execute()
        return len(answers)

    def _land_one(self, request: LandingRequest, tip: str, landed_items: dict[str, str]) -> tuple[LandingAnswer, str]:
        if request.item_id in landed_items:  # never the same change twice, whatever crashed before
            return LandingAnswer("landed", landed_items[request.item_id]), tip
        if self.store.items.lease_holder(request.item_id) != request.attempt:
            return LandingAnswer("stale"), tip  # fencing: only the attempt holding the lease lands
        if not has_commit(self.cache.path, request.commit):
            fetch_ref(self.cache.path, self.cache.url, request.ref)
        tree, conflicts = merge_onto(self.cache.path, tip, request.commit)
        if tree is None:
            return LandingAnswer("conflict", conflicted_paths=conflicts), tip
        landed = replay_commit(self.cache.path, tree, tip, request.commit)
        landed_items[request.item_id] = landed
        return LandingAnswer("landed", landed), landed

    def _push(self, new_tip: str, expected: str) -> bool:
        last = float(self.store.redis.get(f"{self.key}:last_push") or 0)
        wait = last + self.push_interval - time.time()
        if wait > 0:
            time.sleep(wait)
        pushed = push_if_unchanged(self.cache.path, self.cache.url, new_tip, self.branch, expected)
        if pushed:
            self.store.redis.set(f"{self.key}:last_push", time.time(), ex=ANSWER_TTL_SECONDS)
        return pushed
