"""Queue landing (`CADRE_INTEGRATION=queue`): a worker hands its commit to the branch's lander and waits.

The answer is landed (with the commit on the branch), conflict (with the paths), stale (its lease is
gone) or missing. Whenever nobody holds the branch's lander lock, the waiting worker becomes the lander
itself (`orchestrator.landing.lander`).

Getting the commit to the lander: the worker first pushes it to a unique ref,
`refs/cadre/pending/<item>/<attempt>`, which the lander fetches, unless the current lander
("host:pid") runs on the worker's own host, or none is known: then the commit is most likely in the
lander's object store already (the host's bare cache), and the request names no ref. A lander that
lacks the commit of such a request answers "missing"; the worker then pushes the ref and queues the
request again. Either way nothing committed is lost: until it lands the commit is in the worker's
slot, which is salvaged to a rescue branch before any reuse.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.git.cache import BareCache
from orchestrator.git.objects import has_commit, head_commit, stand_on
from orchestrator.git.repo import abort_rebase, push, rebase_onto
from orchestrator.landing.lander import Lander, LandingAnswer, LandingRequest, pending_ref
from orchestrator.landing.outcomes import Answer, LandingOutcome, LandingResult, PendingRefFailed, timed
from orchestrator.landing.protocol import CONFLICT_TURNS, ConflictResolver
from orchestrator.landing.rescue import rescue
from orchestrator.state.keys import Keys
from orchestrator.state.store import Store

log = logging.getLogger(__name__)
ANSWER_WAIT_SECONDS = 900


@dataclass(frozen=True)
class QueueLanding:
    """Submit to the branch's lander; on a conflict, rebase onto the new tip, resolve (bounded), resubmit."""

    store: Store
    push_interval: float

    def land(self, worktree: Path, cache: BareCache, branch: str, item_id: str, attempt: int,
             still_holds_lease: Callable[[], bool], resolve_conflicts: ConflictResolver | None = None) -> LandingResult:
        """Once landed, the worktree stands on the landed commit (the lander replayed ours as a new one, so
        our own copy never looks unlanded); it is fetched first only when this host's cache lacks it (the
        lander ran elsewhere). Unlandable work goes to the rescue branch."""
        upstream = f"refs/remotes/origin/{branch}"
        steps: dict[str, float] = {}
        for turn in range(CONFLICT_TURNS + 1):
            if not still_holds_lease():
                return rescue(worktree, cache, item_id, attempt, "lease lost before landing (stale attempt)",
                              steps=steps, stale=True)
            answer = submit(self.store, cache, worktree, branch, item_id, attempt, head_commit(worktree),
                            self.push_interval, steps=steps)
            if answer.status is Answer.LANDED:
                if not has_commit(cache.path, answer.commit):
                    with timed(steps, "fetch after landing"):
                        cache.fetch()
                with timed(steps, "stand on the landed commit"):
                    stand_on(worktree, answer.commit)
                return LandingResult(LandingOutcome.LANDED, answer.commit, retries=turn, steps=steps)
            if answer.status is not Answer.CONFLICT or turn == CONFLICT_TURNS:
                return rescue(worktree, cache, item_id, attempt, f"lander answered {answer.status.value}",
                              answer.conflicted_paths, turn, steps, stale=answer.status is Answer.STALE)
            with timed(steps, "rebase after a conflict"):
                cache.fetch()
                conflicted = rebase_onto(worktree, upstream)
            if conflicted and not (resolve_conflicts is not None and resolve_conflicts(conflicted)):
                abort_rebase(worktree)
                return rescue(worktree, cache, item_id, attempt, "rebase conflict not resolved", conflicted, turn,
                              steps)
        raise AssertionError("unreachable: the last turn always returns")


def submit(store: Store, cache: BareCache, worktree, branch: str, item_id: str, attempt: int, commit: str,
           push_interval: float, timeout: float = ANSWER_WAIT_SECONDS,
           steps: dict[str, float] | None = None) -> LandingAnswer:
    """Hand `commit` (the worktree's HEAD) to the branch's lander and wait for its answer (landing it
    ourselves whenever nobody holds the lander lock). The pending ref is pushed only if the lander may
    lack the commit, or once it answered "missing". `steps` gets the wall time of each step."""
    steps = {} if steps is None else steps
    key, ref = Keys.landing_branch(cache.public_url, branch), pending_ref(item_id, attempt)
    deadline = time.monotonic() + timeout
    pushed = not _lander_shares_this_host(store, key)
    while True:
        if pushed:
            with timed(steps, "pending-ref push"):
                if not push(worktree, cache.url, f"+{commit}:{ref}").ok:
                    raise PendingRefFailed(f"could not push {ref}")
        request = LandingRequest(item_id, attempt, commit, ref if pushed else "")
        answer = _ask(store, cache, branch, key, request, push_interval, deadline, steps)
        if answer.status is not Answer.MISSING or pushed:
            return answer
        log.info("item %s: the lander lacks %s; pushing %s", item_id, commit[:12], ref)
        pushed = True


def _lander_shares_this_host(store: Store, key: str) -> bool:
    """Whether the branch's lander (the last one seen, if any) runs on this host, so shares its bare cache."""
    lander = store.redis.get(Keys.lander_holder(key))
    return lander is None or str(lander).rpartition(":")[0] == socket.gethostname()


def _ask(store: Store, cache: BareCache, branch: str, key: str, request: LandingRequest, push_interval: float,
         deadline: float, steps: dict[str, float]) -> LandingAnswer:
    """Queue one request and wait for its answer, draining the queue ourselves whenever nobody else does."""
    answer_key = Keys.landing_answer(request.item_id, request.attempt)
    with store.redis.pipeline(transaction=False) as pipe:
        pipe.delete(answer_key)
        pipe.rpush(Keys.landing_queue(key), json.dumps(asdict(request)))
        pipe.execute()
    while time.monotonic() < deadline:
        with timed(steps, "landing (as the lander)"):
            Lander(store, cache, branch, push_interval).drain_if_free()
        with timed(steps, "waiting for the lander"):
            answered = store.redis.blpop([answer_key], timeout=1)
        if answered is not None:
            return LandingAnswer.from_json(answered[1])
    return LandingAnswer(Answer.TIMEOUT)
