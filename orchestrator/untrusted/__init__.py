"""Hostile input's one door: everything an agent or a model wrote is read or cleaned here.

- `text`: model and agent text made safe for a commit message, a log line or a terminal (no NUL, no
  control characters, no escape sequences).
- `files`: reading a file an agent may have made: regular files only, never through a symlink, a size
  bound on every read.
- `tree`: a worktree made safe for Cadre's own git: nested repositories, special files and symlinks
  removed without ever following one.

Imports nothing else of Cadre (the standard library only); every other room may import it.
"""
