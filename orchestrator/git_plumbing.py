"""Landing by git plumbing, for the lander: merge trees without a worktree, commit them, push by CAS.

Built on `orchestrator.git_repo`'s runner, so GitPython stays imported by that one module.
"""

from __future__ import annotations

import tempfile

from orchestrator.git_repo import GitError, PathArg, _call, _env, _one_line, _redact

REJECTED = ("stale info", "fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref")


def merge_onto(repo: PathArg, tip: str, commit: str) -> tuple[str | None, list[str]]:
    """Three-way merge of `commit` onto `tip` in the object store: (tree, []) or (None, conflicting paths)."""
    status, out, err = _call(repo, "merge_tree", "--write-tree", "--name-only", "--no-messages", tip, commit,
                             with_extended_output=True, with_exceptions=False)
    lines = out.splitlines()
    if status == 0:
        return lines[0], []
    if status == 1:
        return None, sorted(set(lines[1:]))
    raise GitError(f"merge-tree of {commit[:12]} onto {tip[:12]} failed: {_one_line(err, str(status))}")


def replay_commit(repo: PathArg, tree: str, parent: str, original: str) -> str:
    """A commit of `tree` on `parent` with `original`'s author, committer, dates and message kept."""
    fields = _call(repo, "log", "-1", "--format=%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B", original)
    an, ae, ad, cn, ce, cd, message = fields.split("\0", 6)
    env = _env(an, ae) | {"GIT_AUTHOR_DATE": ad, "GIT_COMMITTER_NAME": cn, "GIT_COMMITTER_EMAIL": ce,
                          "GIT_COMMITTER_DATE": cd}
    with tempfile.TemporaryFile() as stream:
        stream.write(message.encode("utf-8"))
        stream.seek(0)
        return _call(repo, "commit_tree", tree, "-p", parent, "-F", "-", istream=stream, env=env).strip()


def push_if_unchanged(repo: PathArg, url: str, new_tip: str, branch: str, expected: str) -> bool:
    """Compare-and-swap push: move `branch` from `expected` to `new_tip`; False if the branch had moved."""
    status, out, err = _call(repo, "push", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{expected}",
                             url, f"{new_tip}:refs/heads/{branch}", env=_env(network=True),
                             with_extended_output=True, with_exceptions=False)
    if status == 0:
        return True
    text = f"{out}\n{err}"
    if any(reason in text for reason in REJECTED):
        return False
    raise GitError(f"push to {_redact(url)} failed: {_one_line(err or out, str(status))}")


def has_commit(repo: PathArg, sha: str) -> bool:
    """Whether the object store already has commit `sha` (worktrees of one host cache share it)."""
    status, _out, _err = _call(repo, "cat_file", "-e", f"{sha}^{{commit}}", with_extended_output=True,
                               with_exceptions=False)
    return status == 0


def recent_trailers(repo: PathArg, tip: str, key: str = "Cadre-Item", max_count: int = 2000) -> dict[str, str]:
    """`{trailer value: commit}` for the last `max_count` commits reachable from `tip` (newest wins)."""
    out = _call(repo, "log", f"--max-count={max_count}", f"--format=%H %(trailers:key={key},valueonly,separator=%x2C)",
                tip, "--")
    found: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, values = line.partition(" ")
        for value in filter(None, values.split(",")):
            found.setdefault(value.strip(), sha)
    return found


def fetch_ref(repo: PathArg, url: str, ref: str) -> None:
    """Fetch one ref of the remote into the same ref here (e.g. a worker's pending commit)."""
    _call(repo, "fetch", "--no-tags", url, f"+{ref}:{ref}", env=_env(network=True), what=f"fetch of {ref} failed")
