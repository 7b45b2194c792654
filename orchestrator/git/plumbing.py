"""The lander's traffic with the remote: compare-and-swap pushes, fetching and deleting pending refs.

Built on `orchestrator.git.runner`; its merges and commits, without a worktree, are in-process in `objects`.
"""

from __future__ import annotations

from orchestrator.config.secrets import redact_url
from orchestrator.git.objects import valid_ref_name
from orchestrator.git.runner import GitError, PathArg, git_env, is_push_rejection, one_line, run_git


def push_if_unchanged(repo: PathArg, url: str, new_tip: str, branch: str, expected: str) -> bool:
    """Compare-and-swap push: move `branch` from `expected` to `new_tip`; False if the branch had moved."""
    if not valid_ref_name(f"refs/heads/{branch}"):
        raise GitError(f"refusing to push to an invalid branch name: {branch[:80]!r}")
    status, out, err = run_git(repo, "push", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{expected}",
                             url, f"{new_tip}:refs/heads/{branch}", env=git_env(network=True),
                             with_extended_output=True, with_exceptions=False)
    if status == 0:
        return True
    if is_push_rejection(f"{out}\n{err}"):
        return False
    raise GitError(f"push to {redact_url(url)} failed: {one_line(err or out, str(status))}")


def fetch_refs(repo: PathArg, url: str, refs: list[str]) -> None:
    """Fetch these refs of the remote into the same refs here, all in one fetch (e.g. a batch's pending commits)."""
    if bad := [ref for ref in refs if not valid_ref_name(ref)]:
        raise GitError(f"refusing to fetch an invalid ref: {bad[0][:80]!r}")
    if refs:
        run_git(repo, "fetch", "--no-tags", url, *(f"+{ref}:{ref}" for ref in refs), env=git_env(network=True),
                what=f"fetch of {len(refs)} pending refs failed")


def delete_remote_refs(repo: PathArg, url: str, expected: dict[str, str]) -> None:
    """Delete the remote's refs `{ref: sha}` in one push, each only while it still points at that sha (a ref
    pushed again meanwhile stays)."""
    if not expected:
        return
    if bad := [ref for ref in expected if not valid_ref_name(ref)]:
        raise GitError(f"refusing to delete an invalid ref: {bad[0][:80]!r}")
    leases = [f"--force-with-lease={ref}:{sha}" for ref, sha in expected.items()]
    run_git(repo, "push", "--porcelain", "--no-verify", *leases, url, *(f":{ref}" for ref in expected),
            env=git_env(network=True), with_extended_output=True, with_exceptions=False)


def remote_refs(url: str, pattern: str) -> dict[str, str]:
    """`{ref: sha}` of the remote's refs matching `pattern` (e.g. `refs/cadre/pending/*`)."""
    out = run_git(None, "ls_remote", url, pattern, env=git_env(network=True), what=f"cannot list refs of {redact_url(url)}")
    return {ref: sha for sha, _, ref in (line.partition("\t") for line in out.splitlines()) if ref}
