"""Landing by git plumbing, for the lander: merge trees without a worktree, commit them, push by CAS.

Built on `orchestrator.git.runner`, like every git module here.
"""

from __future__ import annotations

import tempfile

from orchestrator.config.secrets import redact_url
from orchestrator.git.runner import GitError, PathArg, git_env, is_push_rejection, one_line, run_git


def merge_onto(repo: PathArg, tip: str, commit: str) -> tuple[str | None, list[str]]:
    """Three-way merge of `commit` onto `tip` in the object store: (tree, []) or (None, conflicting paths)."""
    status, out, err = run_git(repo, "merge_tree", "--write-tree", "--name-only", "--no-messages", tip, commit,
                             with_extended_output=True, with_exceptions=False)
    lines = out.splitlines()
    if status == 0:
        return lines[0], []
    if status == 1:
        return None, sorted(set(lines[1:]))
    raise GitError(f"merge-tree of {commit[:12]} onto {tip[:12]} failed: {one_line(err, str(status))}")


def replay_commit(repo: PathArg, tree: str, parent: str, original: str) -> str:
    """A commit of `tree` on `parent` with `original`'s author, committer, dates and message kept."""
    fields = run_git(repo, "log", "-1", "--format=%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B", original)
    an, ae, ad, cn, ce, cd, message = fields.split("\0", 6)
    env = git_env(an, ae) | {"GIT_AUTHOR_DATE": ad, "GIT_COMMITTER_NAME": cn, "GIT_COMMITTER_EMAIL": ce,
                          "GIT_COMMITTER_DATE": cd}
    with tempfile.TemporaryFile() as stream:
        stream.write(message.encode("utf-8"))
        stream.seek(0)
        return run_git(repo, "commit_tree", tree, "-p", parent, "-F", "-", istream=stream, env=env).strip()


def push_if_unchanged(repo: PathArg, url: str, new_tip: str, branch: str, expected: str) -> bool:
    """Compare-and-swap push: move `branch` from `expected` to `new_tip`; False if the branch had moved."""
    status, out, err = run_git(repo, "push", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{expected}",
                             url, f"{new_tip}:refs/heads/{branch}", env=git_env(network=True),
                             with_extended_output=True, with_exceptions=False)
    if status == 0:
        return True
    if is_push_rejection(f"{out}\n{err}"):
        return False
    raise GitError(f"push to {redact_url(url)} failed: {one_line(err or out, str(status))}")


def has_commit(repo: PathArg, sha: str) -> bool:
    """Whether the object store already has commit `sha` (worktrees of one host cache share it)."""
    status, _out, _err = run_git(repo, "cat_file", "-e", f"{sha}^{{commit}}", with_extended_output=True,
                               with_exceptions=False)
    return status == 0


def fetch_refs(repo: PathArg, url: str, refs: list[str]) -> None:
    """Fetch these refs of the remote into the same refs here, all in one fetch (e.g. a batch's pending commits)."""
    if refs:
        run_git(repo, "fetch", "--no-tags", url, *(f"+{ref}:{ref}" for ref in refs), env=git_env(network=True),
                what=f"fetch of {len(refs)} pending refs failed")


def delete_remote_refs(repo: PathArg, url: str, expected: dict[str, str]) -> None:
    """Delete the remote's refs `{ref: sha}` in one push, each only while it still points at that sha (a ref
    pushed again meanwhile stays)."""
    if not expected:
        return
    leases = [f"--force-with-lease={ref}:{sha}" for ref, sha in expected.items()]
    run_git(repo, "push", "--porcelain", "--no-verify", *leases, url, *(f":{ref}" for ref in expected),
            env=git_env(network=True), with_extended_output=True, with_exceptions=False)


def remote_refs(url: str, pattern: str) -> dict[str, str]:
    """`{ref: sha}` of the remote's refs matching `pattern` (e.g. `refs/cadre/pending/*`)."""
    out = run_git(None, "ls_remote", url, pattern, env=git_env(network=True), what=f"cannot list refs of {redact_url(url)}")
    return {ref: sha for sha, _, ref in (line.partition("\t") for line in out.splitlines()) if ref}
