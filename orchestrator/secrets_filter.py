"""Masking of secret values in transcripts, logs and events."""

from __future__ import annotations

import os
import re
from functools import lru_cache

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
MASK = "***"
MIN_SECRET_LENGTH = 6


@lru_cache(maxsize=1)
def secret_values() -> tuple[str, ...]:
    """Values worth masking: the configured API key and environment values whose name marks a secret."""
    from orchestrator.settings import get_settings

    values = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    key = get_settings().api_key
    if key is not None and len(key.get_secret_value()) >= MIN_SECRET_LENGTH:
        values.add(key.get_secret_value())
    # Longest first, so a secret containing another is masked whole.
    return tuple(sorted(values, key=len, reverse=True))


def scrub(text: str) -> str:
    """`text` with every known secret value replaced by `***`."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return text
