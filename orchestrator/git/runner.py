"""Running git: the only module that imports GitPython, and the helpers every git module shares.

Each command gets its identity and options through its own environment; no global git config or
process state is changed. Failures raise one-line `GitError`s with credentials in URLs masked.
"""

from __future__ import annotations

import os
import re
from typing import Any

import git

from orchestrator.config.secrets import redact_url, secrets_blanked

PathArg = str | os.PathLike[str]
NETWORK_TIMEOUT_S = 600.0  # ls-remote and push
FETCH_TIMEOUT_S = 1800.0
_GENERIC_LINES = ("could not read from remote repository", "failed to push some refs")
# Push refusals that mean "the branch moved (or is moving) under you": fetch, rebase or redo, then try
# again. A concurrent push holding the remote's ref lock shows up as "failed to update ref" / "cannot lock ref".
PUSH_REJECTIONS = ("non-fast-forward", "fetch first", "stale info", "failed to update ref", "cannot lock ref",
                   "failed to lock")


# Cadre's own git ignores system and user configuration (and the user's attributes and ignore files), never
# runs hooks or an fsmonitor, never enters a submodule or nested repository (whose own configuration could
# name a filter program), and on git 2.42 and newer reads attributes from an empty tree instead of the
# worktree's `.gitattributes` (older git still reads them: `change_gate` refuses changes that would make it
# act on them). Checkouts write files with one process per core (a first slot is mostly file creation).
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FIXED_CONFIG = {"core.hooksPath": "/dev/null", "core.fsmonitor": "false", "protocol.ext.allow": "never",
                "checkout.workers": "0", "core.attributesFile": "/dev/null", "core.excludesFile": "/dev/null",
                "submodule.recurse": "false", "diff.ignoreSubmodules": "all", "status.submoduleSummary": "false",
                "fetch.recurseSubmodules": "false", "push.recurseSubmodules": "no", "attr.tree": EMPTY_TREE,
                "gc.auto": "0", "maintenance.auto": "false", "core.pager": "cat", "credential.helper": "",
                "safe.bareRepository": "all"}
FIXED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1",
             "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": str(len(FIXED_CONFIG)),
             **{f"GIT_CONFIG_KEY_{i}": key for i, key in enumerate(FIXED_CONFIG)},
             **{f"GIT_CONFIG_VALUE_{i}": value for i, value in enumerate(FIXED_CONFIG.values())}}


class GitError(RuntimeError):
    """A git operation failed; `str(error)` is a single line fit for a report."""


def is_push_rejection(text: str) -> bool:
    """Whether git's report of a refused push says the branch moved (so a retry may succeed)."""
    return any(reason in text for reason in PUSH_REJECTIONS)


def one_line(text: str, fallback: str) -> str:
    """The most telling line of git output: the first non-generic `fatal:`, else `error:`, line (the root
    cause comes first; "Could not read from remote repository." is generic), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tagged = [ln.partition(":") for ln in lines if ln.lower().startswith(("fatal:", "error:"))]
    specific = [(kind.lower() != "fatal", msg.strip()) for kind, _, msg in tagged
                if not msg.strip().lower().startswith(_GENERIC_LINES)]
    if specific:
        return redact_url(min(specific, key=lambda item: item[0])[1])
    return redact_url(tagged[-1][2].strip() if tagged else (lines[-1] if lines else fallback))


def _reason(exc: git.CommandError) -> str:
    """One-line reason of a failed command, from its stdout then stderr (stderr wins)."""
    text = "\n".join(re.sub(r"^\s*std(?:out|err): '(.*)'$", r"\1", part or "", flags=re.S)
                     for part in (exc.stdout, exc.stderr))
    return one_line(text, f"git exited with {exc.status}")


def git_env(name: str | None = None, email: str | None = None, *, network: bool = False) -> dict[str, str]:
    """Per-call environment: author and committer identity, and no prompts for network commands."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"} if network else {}
    if name and email:
        env.update(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name,
                   GIT_COMMITTER_EMAIL=email)
    return env


def run_git(cwd: PathArg | None, command: str, *args: str, git_dir: PathArg | None = None,
            what: str = "", **kw: Any):
    """`git <command> <args>` run in `cwd` with the fixed configuration: its stdout, or
    GitError("<what>: <one-line reason>").

    Extra keywords go to GitPython (`env`, `istream`, `kill_after_timeout`, and
    `with_extended_output=True, with_exceptions=False` for `(status, stdout, stderr)`).
    """
    runner = git.Git(None if cwd is None else os.fspath(cwd))
    if git_dir is not None:
        runner.set_persistent_git_options(git_dir=os.fspath(git_dir))
    # GitPython passes this process's environment on: every secret in it is blanked, so that no program
    # git might still start (a credential helper, an ssh command) ever sees Cadre's credentials.
    kw["env"] = {**secrets_blanked(), **FIXED_ENV, **kw.get("env", {})}
    try:
        return getattr(runner, command)(*args, **kw)
    except git.CommandError as exc:
        label = what or f"git {command.replace('_', '-')} failed"
        raise GitError(f"{label}: {_reason(exc)}") from None


def check_args(**values: str) -> None:
    """Refuse empty arguments and arguments git would parse as an option."""
    for what, value in values.items():
        if not value or value.startswith("-"):
            raise GitError(f"invalid {what}: {value!r}")
