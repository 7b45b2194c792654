"""What every `cadre` command shares: the Typer app, one-line errors, and the store."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from orchestrator.config.settings import MissingModelError
from orchestrator.untrusted.text import clean_text

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Run many coding agents on one git repository.")
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print one clear error line and exit. The message is cleaned of control characters and escape
    sequences: it may quote a git remote's answer, a probe's stderr or a user's input."""
    print(f"error: {clean_text(message)}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def open_store():
    from orchestrator.state.store import get_store

    return get_store(patient=False)


def _user_errors() -> tuple[type[BaseException], ...]:
    from orchestrator.agent.backends import BackendUnavailable
    from orchestrator.agent.sandbox import SandboxUnavailable
    from orchestrator.flow.runs import RunRequestError
    from orchestrator.flow.steering import SteeringError
    from orchestrator.state.records import StoreUnavailable, UnknownRecord

    return (StoreUnavailable, UnknownRecord, RunRequestError, MissingModelError, BackendUnavailable,
            SandboxUnavailable, SteeringError)


def guarded(action):
    """Run `action()`, turning the errors a user can cause into one line and exit code 2."""
    try:
        return action()
    except _user_errors() as exc:
        fail(str(exc))
