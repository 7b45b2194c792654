"""The lease reaper: an attempt whose lease lapsed (its worker died) is requeued as a new attempt."""

from __future__ import annotations

import logging

from orchestrator.config.settings import CadreSettings
from orchestrator.flow.cycles import requeue_or_fail
from orchestrator.state.models import AttemptOutcome, ItemStatus
from orchestrator.state.store import Store

log = logging.getLogger(__name__)


def reap_lapsed_attempts(store: Store, settings: CadreSettings) -> list[str]:
    """Requeue (or, past the attempt bound, fail) every running item whose lease has lapsed.

    Returns the ids acted on. Safe to run from several places at once: each step is a transition
    on the item's current attempt.
    """
    acted = []
    for item_id in store.items.running_ids():
        if store.items.lease_holder(item_id) is not None:
            continue
        item = store.items.get(item_id)
        if item.status is not ItemStatus.RUNNING:
            continue
        log.warning("item %s attempt %s: lease lapsed, worker presumed lost", item.id, item.attempt)
        requeue_or_fail(store, item, "worker lost (lease lapsed)", settings.max_attempts,
                        settings.planning.max_rounds_per_node, outcome=AttemptOutcome.LOST)
        acted.append(item_id)
    return acted
