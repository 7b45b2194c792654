"""Git, for every part of Cadre: the only room that runs git, and `runner` its only GitPython import.

- `runner`: running a git command (a fixed configuration, no secret in its environment, one-line errors).
- `objects`: the object store in-process through libgit2 (the only pygit2 import): merges, replays,
  staging a worktree without filter programs, checkouts that never follow an agent's symlink.
- `repo`: porcelain on a worktree or repository (a safe commit of an agent's work, rebase, push, diff stats).
- `change_gate`: what a worker's change may not carry onto the branch (size, risky `.gitattributes`).
- `trailers`: the `Cadre-Item` / `Cadre-Attempt` block, built from records, read from a message's end only.
- `cache`: the host's bare cache of a remote; `workspace`: reusable worktree slots carved out of it.
- `plumbing`: the lander's compare-and-swap pushes and its traffic in pending refs.

May import `orchestrator.config` and `orchestrator.untrusted` only.
"""
