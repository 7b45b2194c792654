"""What a worker's change may not carry onto the branch, checked on what is staged before it is committed.

- too much: a file, or the change as a whole, larger than `CADRE_MAX_COMMIT_MB` (a 300 MB file would be
  pushed, fetched by every host and kept in history forever);
- new `.gitattributes` lines git would act on: a filter driver, a working-tree or GUI encoding, a merge
  driver, or a macro (`[attr]name ...`) that sets one. Git 2.39 (Debian 12) reads attributes from the
  worktree whatever its configuration says: one landed `*.txt working-tree-encoding=X-BOGUS` makes every
  later checkout and commit of the branch fail; a `filter=` would name a program the moment a config
  defines it. Lines that were there before the change stay allowed: the project's own attributes are
  its business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from orchestrator.git.objects import StagedChange, blob_text, staged_changes
from orchestrator.git.runner import PathArg

ATTRIBUTES_FILE = ".gitattributes"
RISKY_ATTRIBUTES = ("filter", "working-tree-encoding", "encoding", "merge")
ATTRIBUTES_READ_BYTES = 1_000_000
SYMLINK_MODE = 0o120000


@dataclass(frozen=True)
class ChangeVerdict:
    """Whether a staged change may land: `problems` (one line each, empty when it may) and the paths to
    leave out of the change so that what remains may be kept on a rescue branch (`unsafe_paths`)."""

    problems: tuple[str, ...] = ()
    unsafe_paths: tuple[str, ...] = field(default_factory=tuple)

    @property
    def safe(self) -> bool:
        return not self.problems


def risky_lines(text: str) -> set[str]:
    """The lines of a `.gitattributes` text that set an attribute git would act on (see the module doc)."""
    found = set()
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        for word in words[1:]:
            name = word.lstrip("-!").split("=", 1)[0]
            if name in RISKY_ATTRIBUTES and not word.startswith(("-", "!")):
                found.add(" ".join(words))
    return found


def excluded(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether `path` or a folder it lies in matches one of the glob `patterns` at any depth (`*` stays
    within one component), as git's `:(exclude,glob)**/PATTERN` pathspec does."""
    parts = PurePosixPath(path).parts
    for end in range(1, len(parts) + 1):
        prefix = PurePosixPath(*parts[:end])
        if any(prefix.match(pattern) for pattern in patterns):
            return True
    return False


def _attribute_problems(worktree: PathArg, change: StagedChange) -> list[str]:
    if PurePosixPath(change.path).name != ATTRIBUTES_FILE or change.new_blob is None:
        return []
    if change.mode == SYMLINK_MODE:
        return [f"{change.path} is a symlink (git refuses to read one)"]
    before = risky_lines(blob_text(worktree, change.old_blob, ATTRIBUTES_READ_BYTES)) if change.old_blob else set()
    added = sorted(risky_lines(blob_text(worktree, change.new_blob, ATTRIBUTES_READ_BYTES)) - before)
    return [f"{change.path} adds {line!r} (filters, encodings and merge drivers are refused)" for line in added]


def judge_change(worktree: PathArg, max_bytes: int) -> ChangeVerdict:
    """The verdict on what is staged in `worktree` (against HEAD). Over the size bound, the largest files
    are the unsafe paths until what remains fits."""
    changes = staged_changes(worktree)
    problems, unsafe = [], []
    for change in changes:
        if change.new_size > max_bytes:
            problems.append(f"{change.path} is {change.new_size} bytes, more than the {max_bytes} a commit may add")
            unsafe.append(change.path)
        elif found := _attribute_problems(worktree, change):
            problems += found
            unsafe.append(change.path)
    remaining = sorted((c for c in changes if c.path not in unsafe), key=lambda c: c.new_size, reverse=True)
    total = sum(c.new_size for c in remaining)
    if total > max_bytes:
        problems.append(f"the change adds {total} bytes, more than the {max_bytes} a commit may add")
        for change in remaining:
            if total <= max_bytes:
                break
            unsafe.append(change.path)
            total -= change.new_size
    return ChangeVerdict(tuple(problems), tuple(unsafe))

