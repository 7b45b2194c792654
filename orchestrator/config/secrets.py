"""Secrets kept out of sight: masking of secret values, and of credentials in URLs, wherever text is shown or stored."""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
MASK = "***"
MIN_SECRET_LENGTH = 6
# The user-info part of a URL (`scheme://user:password@`, or a bare token as `scheme://token@`).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/\s]*)@", re.IGNORECASE)


def redact_url(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`.

    `https://user:pw@host` becomes `https://user:***@host`; a user name alone (`https://token@host`,
    as tokens are often passed) is masked whole, except for ssh URLs where it is only a login name.
    """
    def mask(match: re.Match) -> str:
        scheme, userinfo = match["scheme"], match["userinfo"]
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            return f"{scheme}{user}:{MASK}@"
        return f"{scheme}{userinfo}@" if scheme.lower().startswith("ssh") or not userinfo else f"{scheme}{MASK}@"

    return _URL_USERINFO.sub(mask, text)


@lru_cache(maxsize=1)
def secret_values() -> tuple[str, ...]:
    """Values worth masking: the configured API key and environment values whose name marks a secret."""
    from orchestrator.config.settings import get_settings

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


class SecretScrubbingFilter(logging.Filter):
    """A logging filter that masks secret values in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def scrub_handlers(logger: logging.Logger) -> None:
    """Put the scrubbing filter on every handler of `logger` (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, SecretScrubbingFilter) for f in handler.filters):
            handler.addFilter(SecretScrubbingFilter())


def connect_log_scrubbing() -> None:
    """Mask secrets in the logs of Celery processes (worker, beat) as soon as Celery sets logging up."""
    from celery.signals import after_setup_logger, after_setup_task_logger

    after_setup_logger.connect(lambda logger=None, **_kw: scrub_handlers(logger), weak=False)
    after_setup_task_logger.connect(lambda logger=None, **_kw: scrub_handlers(logger), weak=False)
