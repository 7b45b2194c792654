"""The lander of one branch (`CADRE_INTEGRATION=queue`): lands queued commits by plumbing, one at a time
across machines.

Whoever holds the branch's lander lock (a redis-py Lock kept alive while it works) drains the queue: it
merges each commit onto the current tip and replays it (author, committer, dates and message kept),
in-process (`orchestrator.git.objects`), and moves the branch with one compare-and-swap push per batch,
at most one push per `CADRE_LAND_PUSH_INTERVAL_SECONDS`. The lander never edits code: a conflicting
item is answered once, and its worker rebases, resolves and resubmits.

Crash safety: a request stays in the `processing` list until answered; a new lander puts
unanswered requests back first, and an item whose trailer is already on the branch is answered
"landed" with that commit, so a lander killed mid-batch loses nothing and lands nothing twice. A
lander that stalled past its lock pushes, answers and clears nothing once it wakes. Answered
requests' pending refs are deleted from the remote; `sweep_pending_refs` removes leftovers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from orchestrator.git.cache import BareCache
from orchestrator.git.names import safe_id
from orchestrator.git.objects import ObjectStore
from orchestrator.git.plumbing import delete_remote_refs, fetch_refs, push_if_unchanged, remote_refs
from orchestrator.git.runner import GitError
from orchestrator.landing.outcomes import Answer
from orchestrator.landing.trailers import landed_items
from orchestrator.state.keys import Keys
from orchestrator.state.locks import KeptLock, LockLost
from orchestrator.state.models import ItemStatus
from orchestrator.state.records import UnknownRecord
from orchestrator.state.store import Store

log = logging.getLogger(__name__)
BATCH_SIZE = 64
LOCK_SECONDS = 60
ANSWER_TTL_SECONDS = 3600


@dataclass(frozen=True)
class LandingRequest:
    item_id: str
    attempt: int
    commit: str
    ref: str  # the pending ref holding `commit` on the remote, or "" if it was not pushed


@dataclass(frozen=True)
class LandingAnswer:
    status: Answer
    commit: str | None = None
    conflicted_paths: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: str | bytes) -> LandingAnswer:
        data = json.loads(raw)
        return cls(Answer(data["status"]), data.get("commit"), list(data.get("conflicted_paths") or []))

    def to_json(self) -> str:
        return json.dumps({"status": self.status.value, "commit": self.commit,
                           "conflicted_paths": self.conflicted_paths})


def pending_ref(item_id: str, attempt: int) -> str:
    """The remote ref a worker pushes its commit to for a lander on another host to fetch."""
    return f"refs/cadre/pending/{safe_id(item_id, 'item id')}/{int(attempt)}"


class Lander:
    """Drains one branch's landing queue while holding its lock (a redis-py Lock kept alive while it works).

    Every side effect (the push, the answers, clearing the in-flight list) happens only while the lock
    is still ours: a lander that stalled past its lock's TTL finds it lost and stops without touching
    what its successor took over. `pushes` counts its pushes that moved the branch, `redos` its CAS
    pushes refused because the branch had moved (each batch so refused was refetched and landed again);
    every lander of the branch adds both to the hash `<queue key>:counts` too.
    """

    def __init__(self, store: Store, cache: BareCache, branch: str, push_interval: float = 0.0,
                 lock_seconds: float = LOCK_SECONDS):
        self.store, self.cache, self.branch, self.push_interval = store, cache, branch, push_interval
        self.key = Keys.landing_branch(cache.public_url, branch)
        self.lock = KeptLock(store.redis, Keys.lander_lock(self.key), lock_seconds)
        self.pushes = self.redos = 0
        self._left: tuple[str, dict[str, str]] | None = None  # (tip, landed items) as our last batch left them

    def drain_if_free(self) -> int:
        """Become the lander if nobody is, land everything queued, step down; returns items answered."""
        if not self.lock.acquire():
            return 0
        answered, self._left = 0, None
        # Who lands now, for operators (and fault injection): this process, for as long as it holds the lock.
        self.store.redis.set(Keys.lander_holder(self.key), f"{socket.gethostname()}:{os.getpid()}",
                             px=int(self.lock.seconds * 1000))
        try:
            self._requeue_unanswered()
            while batch := self._take_batch():
                answered += self._land_batch(batch)
        except LockLost as exc:
            log.warning("lander of %s stepped down: %s", self.branch, exc)
        finally:
            self.lock.release()
        return answered

    def _requeue_unanswered(self) -> None:
        # A previous lander died or stalled mid-batch: its requests go back to the front, in order.
        while self.store.redis.lmove(Keys.landing_processing(self.key), Keys.landing_queue(self.key), "RIGHT", "LEFT"):
            self.lock.check()

    def _take_batch(self) -> list[LandingRequest]:
        self.lock.check()
        # Only the lock holder takes from the queue, so at least `waiting` moves will find a request: as many
        # moves as that (not a whole batch's worth of empty ones each time), in one round trip.
        waiting = min(int(self.store.redis.llen(Keys.landing_queue(self.key))), BATCH_SIZE)
        if not waiting:
            return []
        with self.store.redis.pipeline(transaction=False) as pipe:  # one round trip; each move stays atomic
            for _ in range(waiting):
                pipe.lmove(Keys.landing_queue(self.key), Keys.landing_processing(self.key), "LEFT", "RIGHT")
            raws = pipe.execute()
        return [LandingRequest(**json.loads(raw)) for raw in raws if raw is not None]

    def _land_batch(self, batch: list[LandingRequest]) -> int:
        """Land a batch onto the tip with one CAS push; on an outside push, refetch and redo it."""
        present = ObjectStore(self.cache.path)
        fetch_refs(self.cache.path, self.cache.url,  # the batch's pushed commits not here yet, in one fetch
                   [r.ref for r in batch if r.ref and not present.has_commit(r.commit)])
        while True:
            tip, landed_items = self._branch()  # landed_items is kept up to date below
            # Opened after any fetch, so it sees it all; what it writes stays in memory until packed.
            store, new_tip, answers = ObjectStore(self.cache.path, buffered=True), tip, []
            for request in batch:
                answer, new_tip = self._land_one(store, request, new_tip, landed_items)
                answers.append((request, answer))
            store.write_pack()  # the batch's new trees and commits, as one pack: the push (git) reads them
            if new_tip == tip or self._push(new_tip, tip):
                self._left = new_tip, landed_items
                break
            self._left = None
            self.redos += 1
            self.store.redis.hincrby(Keys.lander_counts(self.key), "redos", 1)  # for operators and benchmarks
            log.info("branch %s moved under the lander; redoing a batch of %s", self.branch, len(batch))

        def answer(pipe) -> None:
            for request, reply in answers:
                pipe.rpush(Keys.landing_answer(request.item_id, request.attempt), reply.to_json())
                pipe.expire(Keys.landing_answer(request.item_id, request.attempt), ANSWER_TTL_SECONDS)
            pipe.delete(Keys.landing_processing(self.key))

        self.lock.write_if_held(answer)
        self._forget_pending_refs([r for r in batch if r.ref])
        return len(answers)

    def _branch(self) -> tuple[str, dict[str, str]]:
        """The branch's tip and `{item: commit}` of the items on it: as our previous batch left them (while we
        held the lock throughout: a push from outside since then fails our CAS push, and the batch is redone
        from here on a fresh fetch), else fetched and scanned."""
        if self._left is not None:
            return self._left[0], dict(self._left[1])
        self.cache.fetch()
        tip = self.cache.head(self.branch)
        return tip, landed_items(self.cache.path, tip)

    def _land_one(self, store: ObjectStore, request: LandingRequest, tip: str,
                  landed_items: dict[str, str]) -> tuple[LandingAnswer, str]:
        if request.item_id in landed_items:  # never the same change twice, whatever crashed before
            return LandingAnswer(Answer.LANDED, landed_items[request.item_id]), tip
        if self.store.items.lease_holder(request.item_id) != request.attempt:
            return LandingAnswer(Answer.STALE), tip  # fencing: only the attempt holding the lease lands
        if not store.has_commit(request.commit):
            return LandingAnswer(Answer.MISSING), tip  # not pushed, not on this host: the worker pushes it and asks again
        tree, conflicts = store.merge_onto(tip, request.commit)
        if tree is None:
            return LandingAnswer(Answer.CONFLICT, conflicted_paths=conflicts), tip
        landed = store.replay_commit(tree, tip, request.commit)
        landed_items[request.item_id] = landed
        return LandingAnswer(Answer.LANDED, landed), landed

    def _push(self, new_tip: str, expected: str) -> bool:
        last = float(self.store.redis.get(Keys.lander_last_push(self.key)) or 0)
        wait = last + self.push_interval - time.time()
        if wait > 0:
            time.sleep(wait)
        self.lock.check()  # a lander that lost its lock while waiting never pushes
        pushed = push_if_unchanged(self.cache.path, self.cache.url, new_tip, self.branch, expected)
        if pushed:
            self.pushes += 1
            self.store.redis.hincrby(Keys.lander_counts(self.key), "pushes", 1)
            self.store.redis.set(Keys.lander_last_push(self.key), time.time(), ex=ANSWER_TTL_SECONDS)
        return pushed

    def _forget_pending_refs(self, batch: list[LandingRequest]) -> None:
        """Delete these answered requests' pending refs on the remote (each only if it was not pushed again)."""
        try:
            delete_remote_refs(self.cache.path, self.cache.url, {r.ref: r.commit for r in batch})
        except GitError as exc:  # the sweeper removes what is left; landing is not undone by this
            log.warning("could not delete %s pending refs: %s", len(batch), exc)


def sweep_pending_refs(store: Store, cache: BareCache) -> list[str]:
    """Delete the remote's pending refs no running attempt is waiting on (answered requests whose delete
    failed, submissions of attempts that died); returns the refs deleted."""
    leftovers = {}
    for ref, sha in remote_refs(cache.url, "refs/cadre/pending/*").items():
        item_id, _, attempt = ref.removeprefix("refs/cadre/pending/").rpartition("/")
        try:
            item = store.items.get(item_id)
        except UnknownRecord:
            item = None
        if item is None or item.status is not ItemStatus.RUNNING or str(item.attempt) != attempt:
            leftovers[ref] = sha
    delete_remote_refs(cache.path, cache.url, leftovers)
    return sorted(leftovers)
