"""The file and shell tools agents use inside one directory (a worktree or a read-only snapshot)."""

from __future__ import annotations

import threading
from pathlib import Path

from orchestrator.agent.commands import Shell
from orchestrator.agent.loop import Tool, ToolError, params
from orchestrator.untrusted.files import RefusedPath, read_bytes, write_bytes

MAX_READ_BYTES = 400_000
MAX_EDIT_BYTES = 10_000_000


class WorkspaceTools:
    """Tools bound to one directory: file tools refuse paths outside it (symlinks resolved first), read and
    write only regular files, never through a symlink, and never more than a bound; `bash` runs in the
    shell's sandbox. They run in the worker's own process: the file an agent names is hostile input."""

    def __init__(self, shell: Shell, command_timeout: float, cancel: threading.Event | None = None):
        self.shell = shell
        self.root = shell.workdir.resolve()
        self.command_timeout = command_timeout
        self.cancel = cancel

    def resolve(self, path: str) -> Path:
        """`path` inside the workspace, relative to it; ToolError if it escapes it."""
        if "\0" in path:
            raise ToolError("a path may not contain a NUL character")
        candidate = (self.root / path).resolve()
        if candidate == self.root:
            raise ToolError(f"path {path!r} is the workspace itself, not a file")
        if self.root not in candidate.parents:
            raise ToolError(f"path {path!r} is outside the workspace")
        return candidate.relative_to(self.root)

    def bash(self, args: dict) -> str:
        code, output = self.shell.run(str(args["command"]), self.command_timeout, self.cancel)
        if code is None:
            return f"{output}\n[killed (timeout {self.command_timeout:g} s or shutdown) with its process group]"
        return f"{output}\n[exit code {code}]"

    def read_file(self, args: dict) -> str:
        relative = self.resolve(str(args["path"]))
        try:
            data = read_bytes(self.root, relative, MAX_READ_BYTES, whole=False)
        except RefusedPath as exc:
            raise ToolError(str(exc)) from None
        return data.decode("utf-8", "replace")

    def write_file(self, args: dict) -> str:
        relative = self.resolve(str(args["path"]))
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        try:
            write_bytes(self.root, relative, content.encode("utf-8"))
        except RefusedPath as exc:
            raise ToolError(str(exc)) from None
        return f"wrote {len(content)} characters to {args['path']}"

    def edit_file(self, args: dict) -> str:
        relative = self.resolve(str(args["path"]))
        old, new = args.get("old"), args.get("new")
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            raise ToolError("old and new must be strings and old must not be empty")
        try:
            text = read_bytes(self.root, relative, MAX_EDIT_BYTES).decode("utf-8")
        except RefusedPath as exc:
            raise ToolError(f"{exc} (edit_file works on text files up to {MAX_EDIT_BYTES} bytes)") from None
        except UnicodeDecodeError:
            raise ToolError(f"{args['path']!r} is not UTF-8 text") from None
        count = text.count(old)
        if count != 1:
            raise ToolError(f"old text found {count} times in {args['path']}; it must match exactly once")
        try:
            write_bytes(self.root, relative, text.replace(old, new, 1).encode("utf-8"))
        except RefusedPath as exc:
            raise ToolError(str(exc)) from None
        return f"edited {args['path']}"

    def explore_tools(self) -> list[Tool]:
        """`bash` and `read_file`: what every role gets."""
        return [
            Tool("bash", "Run a shell command in the repository and return its output and exit code.",
                 params(["command"], command="the shell command"), self.bash),
            Tool("read_file", "Return the contents of a file in the repository.",
                 params(["path"], path="path relative to the repository root"), self.read_file),
        ]

    def edit_tools(self) -> list[Tool]:
        """`write_file` and `edit_file`: for workers only."""
        return [
            Tool("write_file", "Create or overwrite a file with the given content.",
                 params(["path", "content"], path="path relative to the repository root",
                        content="the complete new file content"), self.write_file),
            Tool("edit_file", "Replace one exact occurrence of `old` with `new` in a file.",
                 params(["path", "old", "new"], path="path relative to the repository root",
                        old="the exact text to replace (must occur once)", new="the replacement text"),
                 self.edit_file),
        ]
