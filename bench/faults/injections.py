"""The faults: each function runs one trial (a run of ITEMS_PER_RUN items) on a stack, injects its fault at a
random moment and returns what the trial measured. NotInjected: the moment never came (the run ended first).

    worker-kill    SIGKILL the process group of a worker holding an item
    lander-stall   SIGSTOP the process holding the branch's lander lock with requests in its hands, past the
                   lock's TTL, then SIGCONT
    redis-restart  stop redis-server while agents work, start it again on its data dir and AOF
    message-lost   delete a waiting work item's message from Redis before any worker took it
    judge-kill     SIGKILL the judge worker's process group while its model call is under way, start a new one
    network-cut    drop every packet of the namespaced worker's host while its agent runs, then let them through
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import replace

from bench.faults.stack import ITEMS_PER_RUN, Stack, StackSettings, wait_for
from bench.faults.tally import Trial, tally
from orchestrator.landing.lander import LOCK_SECONDS
from orchestrator.queues.inspection import waiting_args
from orchestrator.queues.names import EXECUTE_WORK_ITEM
from orchestrator.state.keys import Keys
from orchestrator.state.models import ItemStatus
from orchestrator.testing.faults import drop_waiting

CLAIM_TIMEOUT = 120  # seconds for a run's first item to be claimed
STALL_SECONDS = LOCK_SECONDS + 5  # past the lander lock's TTL


class NotInjected(Exception):
    """The fault's moment did not come in this run (which has ended meanwhile)."""


def _skip(stack: Stack, run_id: str, reason: str) -> NotInjected:
    stack.wait_run(run_id)
    return NotInjected(f"run {run_id}: {reason}")


def _claimed(stack: Stack, run_id: str, rng: random.Random) -> None:
    """Until the run's first item is claimed, then a random moment into the agents' work."""
    if not wait_for(lambda: stack.running(run_id) or stack.ended(run_id), CLAIM_TIMEOUT):
        raise _skip(stack, run_id, "no item claimed")
    time.sleep(rng.uniform(0, 1.0))


def worker_kill(stack: Stack, tag: str, rng: random.Random, options) -> Trial:
    run_id = stack.start_run(tag)
    _claimed(stack, run_id, rng)
    held = wait_for(lambda: {i: p for i, p in stack.running(run_id).items() if stack.owner(p)}, 30, 0.02)
    if not held:
        raise _skip(stack, run_id, "no worker held an item")
    victim = stack.owner(rng.choice(sorted(held.values())))
    hit, holding = stack.unsettled(run_id), sorted(i for i, p in held.items() if stack.owner(p) is victim)
    killed_at = stack.kill(victim)
    stack.replace_worker(victim)
    note = f"killed worker group {victim.process.pid} holding {holding}"
    return tally(stack, "worker-kill", run_id, tag, hit, killed_at, stack.wait_run(run_id), notes=[note])


def _lander(stack: Stack) -> tuple[str, int, str] | None:
    """(queue key, pid, lock token) of the `cadre` worker that holds a lander lock with requests in flight."""
    client = stack.store.redis
    for lock in client.keys("cadre:land:*:lock"):
        queue = lock.removesuffix(":lock")
        with client.pipeline(transaction=False) as pipe:
            token, lander, in_flight = pipe.get(lock).get(f"{queue}:lander").llen(f"{queue}:processing").execute()
        if token and lander and in_flight:
            pid = int(lander.rsplit(":", 1)[1])
            if stack.owner(pid) is not None:
                return queue, pid, token
    return None


def _stall_lander(stack: Stack, run_id: str) -> tuple[str, int, float]:
    """SIGSTOP the lander caught with requests in its hands; (queue key, pid, when) once it surely holds the lock."""
    while True:
        found = wait_for(lambda: _lander(stack) or (stack.ended(run_id) and "ended"), stack.settings.run_timeout, 0.002)
        if found in (None, "ended"):
            raise _skip(stack, run_id, "no lander caught with requests in flight")
        queue, pid, token = found
        os.kill(pid, signal.SIGSTOP)
        stalled_at = time.time()
        time.sleep(0.3)  # a holder that was not the one stopped would have released its lock by now
        client = stack.store.redis
        if client.get(f"{queue}:lock") == token and client.get(f"{queue}:lander").endswith(f":{pid}"):
            return queue, pid, stalled_at
        os.kill(pid, signal.SIGCONT)


def lander_stall(stack: Stack, tag: str, rng: random.Random, options) -> Trial:
    run_id = stack.start_run(tag)
    queue, pid, stalled_at = _stall_lander(stack, run_id)
    try:
        hit = stack.unsettled(run_id)
        in_hands = stack.store.redis.llen(f"{queue}:processing")
        time.sleep(max(0.0, stalled_at + STALL_SECONDS - time.time()))
        holder = stack.store.redis.get(f"{queue}:lander") if stack.store.redis.exists(f"{queue}:lock") else None
    finally:
        os.kill(pid, signal.SIGCONT)
    note = (f"stopped lander pid {pid} ({in_hands} requests in its hands) for {time.time() - stalled_at:.1f} s; "
            f"lock then held by {holder or 'nobody'}; unsettled items when stopped: {hit}")
    return tally(stack, "lander-stall", run_id, tag, hit, stalled_at, stack.wait_run(run_id), notes=[note])


def redis_restart(stack: Stack, tag: str, rng: random.Random, options) -> Trial:
    run_id = stack.start_run(tag)
    _claimed(stack, run_id, rng)
    if stack.ended(run_id):
        raise _skip(stack, run_id, "the run ended before Redis could be stopped")
    hit, working = stack.unsettled(run_id), sorted(stack.running(run_id))
    stopped_at = time.time()
    stack.redis.stop()
    time.sleep(max(0.0, stopped_at + options.redis_down_seconds - time.time()))
    stack.redis.start()
    if (ended_at := stack.run(run_id).ended_at) is not None and ended_at < stopped_at:
        raise NotInjected(f"run {run_id}: it ended just before Redis was stopped")
    note = f"Redis down {time.time() - stopped_at:.1f} s while {working} ran; unsettled then: {hit}"
    return tally(stack, "redis-restart", run_id, tag, hit, stopped_at, stack.wait_run(run_id), notes=[note])


def message_lost(stack: Stack, tag: str, rng: random.Random, options) -> Trial:
    """No worker runs until the message is gone: every item waits in the `work` queue meanwhile."""
    run_id = stack.start_run(tag)

    def all_waiting():
        items = stack.items(run_id)
        waiting = {args[0] for args in waiting_args(stack.store.redis, "work", EXECUTE_WORK_ITEM)}
        return len(items) == ITEMS_PER_RUN and all(i.id in waiting for i in items) and items

    items = wait_for(all_waiting, CLAIM_TIMEOUT)
    try:
        if not items:
            stack.start_workers()
            raise _skip(stack, run_id, "items never all waiting")
        victim = rng.choice(items).id
        deleted = drop_waiting(stack.store.redis, "work", EXECUTE_WORK_ITEM, victim)
        dropped_at = time.time()
        stack.start_workers()
        ended = stack.wait_run(run_id)
    finally:
        stack.stop_workers()
    note = f"deleted {deleted} message(s) of item {victim}, then started the workers"
    return tally(stack, "message-lost", run_id, tag, [victim], dropped_at, ended, notes=[note])


def judge_kill(stack: Stack, tag: str, rng: random.Random, options) -> Trial:
    run_id = stack.start_run(tag)
    if not wait_for(lambda: stack.policy.judge_request_at(tag) or stack.ended(run_id), stack.settings.run_timeout):
        raise _skip(stack, run_id, "the judge never asked the model")
    time.sleep(rng.uniform(0, 0.8 * stack.settings.judge_delay))
    leased = stack.store.redis.exists(Keys.judge_lease(run_id, stack.run(run_id).cycle))
    if stack.ended(run_id) or not leased:
        raise _skip(stack, run_id, "the run ended before the judge could be killed")
    victim = stack.judge.process.pid
    killed_at = stack.kill(stack.judge)
    stack.replace_judge()
    note = f"killed judge group {victim} {killed_at - stack.policy.judge_request_at(tag):.1f} s into its model call"
    return tally(stack, "judge-kill", run_id, tag, [], killed_at, stack.wait_run(run_id), whole_run=True,
                 notes=[note])


def network_cut(stack: Stack, tag: str, rng: random.Random, options) -> Trial:
    run_id = stack.start_run(tag)

    def namespaced_agent():
        started = {(e.data["item_id"], e.data["attempt"]) for e in stack.events(run_id, "agent_started")}
        finished = {(e.data["item_id"], e.data["attempt"]) for e in stack.events(run_id, "agent_finished")}
        return sorted(i.id for i in stack.items(run_id)
                      if i.status is ItemStatus.RUNNING and i.attempts and (i.id, i.attempt) in started - finished
                      and stack.group_of(i.attempts[-1].pid) in stack.namespaced)

    agents = wait_for(lambda: namespaced_agent() or stack.ended(run_id)
                      or bool(stack.items(run_id) and not stack.unsettled(run_id)), CLAIM_TIMEOUT, 0.02)
    if not isinstance(agents, list):
        raise _skip(stack, run_id, "the namespaced worker ran no agent")
    time.sleep(rng.uniform(0, 0.3))
    hit = stack.unsettled(run_id)
    try:
        stack.namespace.cut()
        cut_at = time.time()
        time.sleep(options.cut_seconds)
    finally:
        stack.namespace.restore()
    restored_at = time.time()
    note = f"cut the namespaced worker's host off for {restored_at - cut_at:.1f} s while its agent ran {agents}"
    isolated = next(w for w in stack.workers if w.process.pid in stack.namespaced)
    if wait_for(lambda: stack.answers(isolated), 300, 1):  # the next trial needs it to take work again
        note += f"; it answered a ping {time.time() - restored_at:.1f} s after the network came back"
    else:
        note += "; it did not answer a ping within 300 s after the network came back"
    return tally(stack, "network-cut", run_id, tag, hit, cut_at, stack.wait_run(run_id), notes=[note])


FAULTS = {"worker-kill": worker_kill, "lander-stall": lander_stall, "redis-restart": redis_restart,
          "message-lost": message_lost, "judge-kill": judge_kill, "network-cut": network_cut}


def settings_for(fault: str, base: StackSettings, options) -> StackSettings:
    """The stack a fault needs (Cadre's settings untouched): no workers until a message is gone, a judge
    whose model takes a while to answer, a worker on a second host."""
    changes = {"message-lost": {"workers_at_start": False},
               "judge-kill": {"judge_delay": options.judge_delay},
               "network-cut": {"namespaced_workers": 1}}.get(fault, {})
    return replace(base, **changes)
