"""Secrets kept out of sight: masking of secret values, and of credentials in URLs, wherever text is shown or stored."""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|AUTH|CREDENTIALS?)$", re.IGNORECASE)
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


_registered: set[str] = set()


def url_credentials(text: str) -> set[str]:
    """The passwords and bare tokens in the URLs of `text` (`scheme://user:password@`, `scheme://token@`)."""
    found = set()
    for match in _URL_USERINFO.finditer(text):
        user, has_password, password = match["userinfo"].partition(":")
        if has_password:
            found.add(password)
        elif user and not match["scheme"].lower().startswith("ssh"):
            found.add(user)
    return found


def register_secret(*values: str) -> None:
    """Mask these values too from now on in this process (e.g. the credentials of a run's repository URL)."""
    new = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH} - _registered
    if new:
        _registered.update(new)
        _environment_secrets.cache_clear()


@lru_cache(maxsize=1)
def _environment_secrets() -> tuple[str, ...]:
    from orchestrator.config.settings import get_settings

    values = set(_registered)
    for name, value in os.environ.items():
        if SECRET_NAME.search(name):
            values.add(value)
            values.update(value.split(":", 1)[1:])  # `user:password` (basic auth): the password alone too
        values.update(url_credentials(value))  # e.g. the password in CADRE_REDIS_URL
    key = get_settings().api_key
    if key is not None:
        values.add(key.get_secret_value())
    # Longest first, so a secret containing another is masked whole.
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def secrets_blanked() -> dict[str, str]:
    """`{name: ""}` for every variable of this process's environment that holds a secret (named like one,
    with credentials in a URL, or one of Cadre's own settings): for a child that must not see them."""
    return {name: "" for name, value in os.environ.items()
            if SECRET_NAME.search(name) or name.startswith("CADRE_") or url_credentials(value)}


def secret_values() -> tuple[str, ...]:
    """Values worth masking: the configured API key, environment values whose name marks a secret (and the
    password part of `user:password` ones), credentials inside URL values, and registered secrets."""
    return _environment_secrets()


def scrub(text: str) -> str:
    """`text` with every known secret value, and the credentials of every URL in it, replaced by `***`."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return redact_url(text)


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
