"""The file and shell tools agents use inside one directory (a worktree or a read-only snapshot)."""

from __future__ import annotations

import threading
from pathlib import Path

from orchestrator.agent.commands import Shell
from orchestrator.agent.loop import Tool, ToolError, params

MAX_READ_BYTES = 400_000


class WorkspaceTools:
    """Tools bound to one directory: file tools refuse paths outside it (symlinks resolved first), and
    `bash` runs in the shell's sandbox."""

    def __init__(self, shell: Shell, command_timeout: float, cancel: threading.Event | None = None):
        self.shell = shell
        self.root = shell.workdir.resolve()
        self.command_timeout = command_timeout
        self.cancel = cancel

    def resolve(self, path: str) -> Path:
        """`path` inside the workspace; ToolError if it escapes it."""
        candidate = (self.root / path).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise ToolError(f"path {path!r} is outside the workspace")
        return candidate

    def bash(self, args: dict) -> str:
        code, output = self.shell.run(str(args["command"]), self.command_timeout, self.cancel)
        if code is None:
            return f"{output}\n[killed (timeout {self.command_timeout:g} s or shutdown) with its process group]"
        return f"{output}\n[exit code {code}]"

    def read_file(self, args: dict) -> str:
        path = self.resolve(str(args["path"]))
        if not path.is_file():
            raise ToolError(f"no file {args['path']!r}")
        data = path.read_bytes()[:MAX_READ_BYTES]
        return data.decode("utf-8", "replace")

    def write_file(self, args: dict) -> str:
        path = self.resolve(str(args["path"]))
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return f"wrote {len(content)} characters to {args['path']}"

    def edit_file(self, args: dict) -> str:
        path = self.resolve(str(args["path"]))
        old, new = args.get("old"), args.get("new")
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            raise ToolError("old and new must be strings and old must not be empty")
        if not path.is_file():
            raise ToolError(f"no file {args['path']!r}")
        text = path.read_text(encoding="utf-8")
        count = text.count(old)
        if count != 1:
            raise ToolError(f"old text found {count} times in {args['path']}; it must match exactly once")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
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
