"""Every Redis key Cadre's state uses, in one place, all under the `cadre:` prefix."""

from __future__ import annotations

import hashlib


def _key(pattern: str) -> staticmethod:
    """A key builder: `pattern` with `{}` filled by the ids it is called with, in order."""
    def build(*ids: object) -> str:
        return pattern.format(*ids)

    build.__doc__ = f"`{pattern}`"
    return staticmethod(build)


class Keys:
    """Key builders: `Keys.item(item_id)` is `cadre:item:<item_id>`."""

    runs = _key("cadre:runs")
    active_runs = _key("cadre:runs:active")
    run = _key("cadre:run:{}")
    usage = _key("cadre:run:{}:usage")
    events = _key("cadre:run:{}:events")
    run_items = _key("cadre:run:{}:items")
    run_nodes = _key("cadre:run:{}:nodes")
    checks = _key("cadre:run:{}:checks")
    repo_url = _key("cadre:run:{}:repo-url")
    budget_warned = _key("cadre:run:{}:warned:{}")
    cycle = _key("cadre:cycle:{}:{}")
    cycle_items = _key("cadre:cycle:{}:{}:items")
    cycle_nodes = _key("cadre:cycle:{}:{}:nodes")
    node = _key("cadre:node:{}")
    node_pending = _key("cadre:node:{}:pending")
    node_items = _key("cadre:node:{}:items")
    item = _key("cadre:item:{}")
    lease = _key("cadre:lease:{}")
    judge_lease = _key("cadre:judge:{}:{}")
    check_requested = _key("cadre:run:{}:check-requested")
    checking = _key("cadre:run:{}:checking")
    sweep_requested = _key("cadre:sweep:{}")
    transcript = _key("cadre:transcript:{}:{}")
    transcript_size = _key("cadre:transcript:{}:{}:bytes")
    item_transcripts = _key("cadre:item:{}:transcripts")
    metrics = _key("cadre:metrics")
    running_items = _key("cadre:items:running")
    guidance = _key("cadre:run:{}:guidance")
    # The landing queue of one branch of one repository (`landing_branch` gives its id) and its lander.
    landing_queue = _key("cadre:land:{}:queue")
    landing_processing = _key("cadre:land:{}:processing")
    lander_lock = _key("cadre:land:{}:lock")
    lander_holder = _key("cadre:land:{}:lander")
    lander_counts = _key("cadre:land:{}:counts")
    lander_last_push = _key("cadre:land:{}:last_push")
    landing_answer = _key("cadre:land:answer:{}:{}")

    @staticmethod
    def landing_branch(url: str, branch: str) -> str:
        """The id of one branch of one repository in the landing keys (a digest: URLs hold any character)."""
        return hashlib.sha256(f"{url}\n{branch}".encode()).hexdigest()[:16]
