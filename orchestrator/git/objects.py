"""The object store in-process, through libgit2: the only module that imports pygit2.

For landing's hot paths, where a git process per step costs more than the step: whether a commit is
present, three-way merges of commits into a tree, replaying a commit with its author, committer, dates
and message kept, reading a worktree's HEAD and standing a worktree on another commit. Objects are
written straight into the repository's object store, as `git commit-tree` would write them.

Like `runner` for git, libgit2 here reads no system, XDG or user configuration (set once, at import),
and it never runs hooks, an fsmonitor or filter programs. It does not check, object by object, that what
a new tree or commit names exists (libgit2's "strict object creation", off at import): everything written
here is built from objects read from the same store. Failures raise one-line `GitError`s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager

import pygit2
from pygit2.enums import CheckoutStrategy, ConfigLevel, FileStatus, RepositoryOpenFlag

from orchestrator.git.runner import GitError, PathArg
from orchestrator.untrusted.tree import clear_hazards

for _level in (ConfigLevel.SYSTEM, ConfigLevel.XDG, ConfigLevel.GLOBAL, ConfigLevel.PROGRAMDATA):
    pygit2.settings.search_path[_level] = ""
pygit2.settings.enable_strict_object_creation(False)


@contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """Turn libgit2's errors (pygit2.GitError, KeyError for a missing object, ValueError) into a GitError."""
    try:
        yield
    except (pygit2.GitError, KeyError, ValueError) as exc:
        raise GitError(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _open(path: PathArg) -> pygit2.Repository:
    with _failing_as(f"cannot open repository {os.fspath(path)}"):
        return pygit2.Repository(os.fspath(path), RepositoryOpenFlag.NO_SEARCH)


class _ObjectsInMemory(pygit2.OdbBackend):
    """An object database backend holding written objects in a dict until they are packed (a loose object is
    a file of its own, and creating a file costs more than merging and replaying a commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, tuple[int, bytes]] = {}

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        return self.objects[str(oid)]  # KeyError: not here, libgit2 asks the next backend

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        kind, data = self.objects[str(oid)]
        return kind, len(data)

    def read_prefix_cb(self, prefix: pygit2.Oid) -> tuple[int, bytes, pygit2.Oid]:
        raise KeyError(prefix)  # only full ids are written and read here

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return str(oid) in self.objects

    def exists_prefix_cb(self, prefix: pygit2.Oid) -> pygit2.Oid:
        raise KeyError(prefix)

    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self.objects[str(oid)] = (kind, bytes(data))

    def refresh_cb(self) -> None:
        pass

    def __iter__(self) -> Iterator[pygit2.Oid]:
        return (pygit2.Oid(hex=sha) for sha in list(self.objects))


class ObjectStore:
    """One repository (a bare cache, or a worktree of it) opened in-process; one per thread.

    `buffered`: objects written (merged trees, replayed commits) stay in memory until `write_pack` writes
    them as one pack into the repository, which must happen before anything outside this process (a git
    push) needs them; unwritten ones vanish with the store."""

    def __init__(self, path: PathArg, buffered: bool = False) -> None:
        self.repo = _open(path)
        self._memory: _ObjectsInMemory | None = None
        if buffered:
            self._memory = _ObjectsInMemory()
            with _failing_as("cannot buffer objects in memory"):
                self.repo.odb.add_backend(self._memory, 1_000)  # first in line: every write lands here

    def write_pack(self) -> int:
        """Write the objects buffered so far as one pack into the repository; returns how many."""
        if self._memory is None or not self._memory.objects:
            return 0
        with _failing_as(f"cannot write a pack into {self.repo.path}"):
            builder = pygit2.PackBuilder(self.repo)
            for sha in self._memory.objects:
                builder.add(pygit2.Oid(hex=sha))
            builder.write(os.path.join(self.repo.path, "objects", "pack"))
        written = len(self._memory.objects)
        self._memory.objects.clear()
        return written

    def has_commit(self, sha: str) -> bool:
        """Whether the object store holds commit `sha` (worktrees of one host's cache share it)."""
        try:
            return isinstance(self.repo.get(sha), pygit2.Commit)
        except (pygit2.GitError, ValueError):
            return False

    def merge_onto(self, tip: str, commit: str) -> tuple[str | None, list[str]]:
        """Three-way merge of `commit` onto `tip` (from their merge base, renames found): (tree, []) or
        (None, the conflicting paths)."""
        with _failing_as(f"merge of {commit[:12]} onto {tip[:12]} failed"):
            index = self.repo.merge_commits(tip, commit)
            if index.conflicts is not None:
                return None, sorted({entry.path for sides in index.conflicts for entry in sides if entry is not None})
            return str(index.write_tree(self.repo)), []

    def replay_commit(self, tree: str, parent: str, original: str) -> str:
        """A commit of `tree` on `parent` with `original`'s author, committer, dates, message and encoding."""
        with _failing_as(f"replay of {original[:12]} failed"):
            source = self.repo[original].peel(pygit2.Commit)
            encoding = () if source.message_encoding is None else (source.message_encoding,)
            oid = self.repo.create_commit(None, source.author, source.committer, source.raw_message,
                                          pygit2.Oid(hex=tree), [pygit2.Oid(hex=parent)], *encoding)
            return str(oid)


def has_commit(path: PathArg, sha: str) -> bool:
    """Whether the repository at `path` already has commit `sha`."""
    return ObjectStore(path).has_commit(sha)


def head_commit(path: PathArg) -> str:
    """Sha of HEAD in the repository or worktree at `path`."""
    repo = _open(path)
    with _failing_as(f"no HEAD in {os.fspath(path)}"):
        return str(repo.head.peel(pygit2.Commit).id)


def stand_on(worktree: PathArg, sha: str) -> None:
    """Move a clean worktree onto commit `sha`, detached: its index and the files that differ are rewritten
    (files git does not track are left alone, but symlinks and nested repositories are removed first: libgit2
    would write a tracked `a/b` through an agent's symlink `a`)."""
    clear_hazards(Path(os.fspath(worktree)), symlinks=True)
    repo = _open(worktree)
    with _failing_as(f"cannot move {os.fspath(worktree)} onto {sha[:12]}"):
        commit = repo[sha].peel(pygit2.Commit)
        repo.checkout_tree(commit.tree, strategy=CheckoutStrategy.FORCE)
        repo.set_head(commit.id)


def resolve_commit(path: PathArg, rev: str) -> str | None:
    """Sha of the commit `rev` names in the repository at `path`, or None if it names none."""
    repo = _open(path)
    try:
        return str(repo.revparse_single(rev).peel(pygit2.Commit).id)
    except (pygit2.GitError, KeyError, ValueError, pygit2.InvalidSpecError):
        return None


def first_unreachable(path: PathArg, tip: str, hidden_prefix: str = "refs/remotes/") -> str | None:
    """A commit reachable from `tip` but from no ref under `hidden_prefix` (the worktree's own work), or None."""
    repo = _open(path)
    with _failing_as(f"cannot walk from {tip} in {os.fspath(path)}"):
        walker = repo.walk(repo.revparse_single(tip).peel(pygit2.Commit).id, pygit2.enums.SortMode.NONE)
        for name in repo.references:
            if name.startswith(hidden_prefix):
                target = repo.references[name].resolve().target
                if isinstance(repo.get(target), pygit2.Commit):
                    walker.hide(target)
        return next((str(commit.id) for commit in walker), None)


def check_out_detached(worktree: PathArg, sha: str) -> None:
    """Put a worktree on commit `sha`, detached: index and tracked files rewritten, merge or cherry-pick
    state dropped. Symlinks, nested repositories and special files are removed first (never followed: the
    checkout must not write through them); other untracked and ignored files stay (`git clean` removes them)."""
    clear_hazards(Path(os.fspath(worktree)), symlinks=True)
    repo = _open(worktree)
    with _failing_as(f"cannot reset {os.fspath(worktree)} to {sha[:12]}"):
        commit = repo[sha].peel(pygit2.Commit)
        repo.checkout_tree(commit.tree, strategy=CheckoutStrategy.FORCE)
        repo.set_head(commit.id)
        repo.state_cleanup()


def commit_index(worktree: PathArg, message: str, name: str, email: str) -> str | None:
    """Commit the worktree's index as `git commit --cleanup=verbatim` would, without a git process: `message`
    kept byte for byte, `name <email>` as author and committer, now; the branch HEAD names moves (or HEAD
    itself, detached). Returns the new sha, or None when the index holds what HEAD holds."""
    if "\0" in message:  # libgit2 takes a C string: a NUL would cut the message, and Cadre's trailers, there
        raise GitError("commit message contains a NUL character")
    repo = _open(worktree)
    with _failing_as(f"commit failed in {os.fspath(worktree)}"):
        parent = repo.head.peel(pygit2.Commit)
        tree = repo.index.write_tree()
        if tree == parent.tree_id:
            return None
        signature = pygit2.Signature(name, email)
        return str(repo.create_commit("HEAD", signature, signature, message, tree, [parent.id]))


def init_bare(path: PathArg, config: dict[str, str]) -> None:
    """Create a bare repository at `path` (parents included) and set `config`, key by key in order, as
    `git init --bare` and `git config` would."""
    with _failing_as(f"cannot create repository {os.fspath(path)}"):
        repo = pygit2.init_repository(os.fspath(path), bare=True)
        for key, value in config.items():
            repo.config[key] = value


def config_value(path: PathArg, key: str) -> str | None:
    """The value of `key` in the repository's own configuration, or None when it is unset."""
    config = _open(path).config
    with _failing_as(f"cannot read {key} in {os.fspath(path)}"):
        return config[key] if key in config else None


_WORKTREE_CHANGES = (FileStatus.WT_NEW | FileStatus.WT_MODIFIED | FileStatus.WT_DELETED | FileStatus.WT_TYPECHANGE
                     | FileStatus.WT_RENAMED | FileStatus.CONFLICTED)


def stage_worktree(worktree: PathArg, leave_out: Callable[[str], bool]) -> list[str]:
    """Stage every change of the worktree as `git add -A` would, in-process: libgit2 runs no filter program
    and knows no `working-tree-encoding`, so nothing in the worktree can run a program or break the commit.
    Paths for which `leave_out` is true are not staged; returns those that had changes. The worktree must
    have been cleared of nested repositories and special files (`untrusted.tree.clear_hazards`)."""
    repo = _open(worktree)
    left: list[str] = []
    with _failing_as(f"cannot stage the changes of {os.fspath(worktree)}"):
        index = repo.index
        for path, flags in sorted(repo.status(untracked_files="all", ignored=False).items()):
            if not flags & _WORKTREE_CHANGES:
                continue
            if leave_out(path):
                left.append(path)
            elif flags & FileStatus.WT_DELETED:
                if index.conflicts is not None and path in index.conflicts:
                    del index.conflicts[path]
                if path in index:
                    index.remove(path)
            else:
                index.add(path)
        index.write()
    return left


def unstage(worktree: PathArg, paths: list[str]) -> None:
    """Put these paths of the worktree's index back as HEAD has them (the files stay as they are)."""
    repo = _open(worktree)
    with _failing_as(f"cannot unstage in {os.fspath(worktree)}"):
        tree, index = repo.head.peel(pygit2.Commit).tree, repo.index
        for path in paths:
            try:
                entry = tree[path]
            except KeyError:
                if path in index:
                    index.remove(path)
                continue
            index.add(pygit2.IndexEntry(path, entry.id, entry.filemode))
        index.write()


@dataclass(frozen=True)
class StagedChange:
    """One path whose staged content differs from HEAD's: the blob ids before and after (None: absent),
    the new blob's size and its file mode."""

    path: str
    old_blob: str | None
    new_blob: str | None
    new_size: int
    mode: int


def staged_changes(worktree: PathArg) -> list[StagedChange]:
    """What the worktree's index would commit on top of HEAD, path by path (renames as delete + add)."""
    repo = _open(worktree)
    with _failing_as(f"cannot read the staged changes of {os.fspath(worktree)}"):
        head_tree = repo.head.peel(pygit2.Commit).tree
        changes = []
        for patch_delta in repo.index.diff_to_tree(head_tree).deltas:  # old: HEAD's tree, new: the index
            old, new = patch_delta.old_file, patch_delta.new_file
            present = any(new.id.raw)
            size = repo.odb.read_header(new.id)[1] if present else 0
            changes.append(StagedChange(new.path or old.path, str(old.id) if any(old.id.raw) else None,
                                        str(new.id) if present else None, size, int(new.mode)))
        return changes


def blob_text(path: PathArg, blob: str, max_bytes: int) -> str:
    """The first `max_bytes` bytes of a blob, decoded (for reading what a change puts in `.gitattributes`)."""
    repo = _open(path)
    with _failing_as(f"cannot read blob {blob[:12]}"):
        return repo[blob].peel(pygit2.Blob).data[:max_bytes].decode("utf-8", "replace")


def commit_messages(path: PathArg, tip: str, max_count: int) -> list[tuple[str, str]]:
    """(sha, raw message) of the last `max_count` commits reachable from `tip`, newest first, in-process."""
    repo = _open(path)
    with _failing_as(f"cannot walk from {tip} in {os.fspath(path)}"):
        start = repo.revparse_single(tip).peel(pygit2.Commit).id
        found = []
        for commit in repo.walk(start, pygit2.enums.SortMode.TIME):
            if len(found) >= max_count:
                break
            found.append((str(commit.id), commit.raw_message.decode("utf-8", "replace")))
        return found


def valid_ref_name(name: str) -> bool:
    """Whether `name` (`refs/heads/...`) is a well-formed reference name, as `git check-ref-format` says."""
    return pygit2.reference_is_valid_name(name)
