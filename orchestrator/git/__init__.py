"""Git, for every part of Cadre: the only room that runs git, and `runner` its only GitPython import.

- `runner`: running a git command (identity per call, one-line errors, push-rejection reasons).
- `repo`: porcelain on a worktree or repository (commit, rebase, push, diff stats, trailer scans).
- `cache`: the host's bare cache of a remote; `workspace`: reusable worktree slots carved out of it.
- `plumbing`: the lander's merges, commits and compare-and-swap pushes without a worktree.

May import `orchestrator.config` only.
"""
