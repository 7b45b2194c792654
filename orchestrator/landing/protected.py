"""Protected paths (`cadre run --protect GLOB`, `CADRE_PROTECT`): files no worker's commit may add, change or
delete, so the tests and checks the judge relies on stay as they are on the branch.

A glob is matched against each changed file's path relative to the repository root, with `fnmatch` rules
(`*` also matches `/`): `tests/*` protects everything under `tests/`, `*.lock` every lock file, and a plain
path (`ci/check.sh`) that one file. A glob naming a folder (`tests/`) protects everything under it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


def is_protected(path: str, globs: tuple[str, ...] | list[str]) -> bool:
    """Whether the repository-relative `path` matches one of `globs`."""
    for glob in globs:
        pattern = glob.strip().lstrip("/")
        if not pattern:
            continue
        if pattern.endswith("/"):
            pattern += "*"
        if fnmatchcase(path, pattern):
            return True
    return False


def touched_protected(changed: list[str], globs: tuple[str, ...] | list[str]) -> list[str]:
    """The paths among `changed` that are protected, sorted."""
    return sorted(p for p in changed if is_protected(p, globs))
