"""Choosing the landing strategy once, from the settings."""

from __future__ import annotations

from orchestrator.config.settings import CadreSettings
from orchestrator.landing.direct import DirectLanding
from orchestrator.landing.protocol import Landing
from orchestrator.landing.queue import QueueLanding
from orchestrator.state.store import Store


def landing_for(settings: CadreSettings, store: Store) -> Landing:
    """`CADRE_INTEGRATION`: `queue` (the branch's lander) or `direct` (each worker pushes itself)."""
    landing = settings.landing
    if landing.strategy == "queue":
        return QueueLanding(store, landing.push_interval_seconds)
    return DirectLanding(landing.push_attempts)
