"""The agent sandbox (bubblewrap), escape by escape, with a real worktree of a real bare cache.

Each test runs what an adversarial agent would run in its `bash` tool and checks it fails, while
what an agent needs in its worktree (git status, diff, log, writing its own files) still works.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.agent.sandbox import Bubblewrap, SandboxUnavailable, check_sandbox
from orchestrator.agent.commands import shell_for
from orchestrator.config.settings import CadreSettings
from orchestrator.flow.agent_runs import workspace_tools, worktree_shell
from orchestrator.git.workspace import prepare_cache, worktree_slot
from tests.services import make_remote

SECRETS = {"CADRE_REDIS_URL": "redis://:redis-pw-0123456789@127.0.0.1:6379/0",
           "FLOWER_BASIC_AUTH": "admin:flower-pw-0123456789", "OPENAI_API_KEY": "sk-openai-0123456789",
           "CADRE_API_KEY": "sk-cadre-0123456789"}


@pytest.fixture
def agent(tmp_path, monkeypatch):
    """(settings, worktree, tools) for an agent in a worktree slot, with secrets in the worker's environment."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = CadreSettings(data_dir=tmp_path / "data")
    (settings.data_dir / "transcripts").mkdir(parents=True)
    (settings.data_dir / "transcripts" / "other-run.jsonl").write_text("another run's transcript")
    remote = make_remote(tmp_path / "git", {"README.md": "# sample\n"})
    cache = prepare_cache(settings.data_dir, str(remote))
    with worktree_slot(cache, "worker", "refs/remotes/origin/main") as worktree:
        yield settings, worktree, workspace_tools(settings, worktree), cache


def bash(tools, command: str) -> str:
    return tools.bash({"command": command})


def test_the_sandbox_starts_here():
    check_sandbox(Bubblewrap(), Path("/tmp"))
    with pytest.raises(SandboxUnavailable, match="CADRE_SANDBOX=off"):
        check_sandbox(Bubblewrap(binary="/nonexistent/bwrap"), Path("/tmp"))


def test_no_secret_in_the_environment_or_in_proc(agent):
    _settings, _worktree, tools, _cache = agent
    output = bash(tools, "env; cat /proc/$PPID/environ; cat /proc/1/environ; cat /proc/*/cmdline | tr '\\0' ' '")
    for value in SECRETS.values():
        assert value not in output
    assert not any(f"{name}=" in output for name in SECRETS), output
    assert "test_sandbox.py" not in output, "the worker's own process (this test) is invisible"
    assert os.environ["CADRE_API_KEY"] == SECRETS["CADRE_API_KEY"]  # the worker itself still has it


def test_own_pid_namespace_hides_the_worker(agent):
    _settings, _worktree, tools, _cache = agent
    pids = bash(tools, "ls /proc | grep -E '^[0-9]+$' | wc -l").split()[0]
    assert int(pids) < 10, "only the sandbox's own few processes are visible"
    assert f"/proc/{os.getpid()}" not in bash(tools, f"ls -d /proc/{os.getpid()} 2>/dev/null")


def test_no_network_by_default(agent):
    _settings, _worktree, tools, _cache = agent
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]  # listening: a connection from outside the sandbox would succeed
        probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\""
        assert "CONNECTED" not in bash(tools, probe)


def test_the_git_cache_cannot_be_changed_but_git_works(agent):
    _settings, worktree, tools, cache = agent
    config_before = (cache.path / "config").read_text()
    (worktree / "new.txt").write_text("mine\n")
    out = bash(tools, "git status --short; git log --oneline | head -1; git diff --stat HEAD")
    assert "?? new.txt" in out and "initial commit" in out
    out = bash(tools, "git config core.hooksPath /tmp/hooks; echo '#!/bin/sh' > $(git rev-parse --git-common-dir)/hooks/"
                      "post-checkout; git update-ref refs/heads/evil HEAD; echo 'gitdir: /tmp/evil' > .git")
    assert (cache.path / "config").read_text() == config_before
    assert not (cache.path / "hooks" / "post-checkout").exists()
    assert not (cache.path / "refs" / "heads" / "evil").exists()
    assert (worktree / ".git").read_text().startswith(f"gitdir: {cache.path}"), out


def test_nothing_outside_the_worktree_is_writable_or_readable(agent, tmp_path):
    settings, worktree, tools, _cache = agent
    outside = tmp_path / "outside.txt"
    out = bash(tools, f"echo pwned > {outside}; echo pwned > /etc/pwned; ln -s {outside} link; echo pwned >> link; "
                      f"cat {settings.data_dir}/transcripts/other-run.jsonl; ls {Path.home()}")
    assert not outside.exists() and not Path("/etc/pwned").exists()
    assert "another run's transcript" not in out
    assert bash(tools, "echo fine > mine.txt && cat mine.txt").startswith("fine")
    with pytest.raises(Exception, match="outside the workspace"):
        tools.write_file({"path": "../outside.txt", "content": "x"})
    (worktree / "escape").symlink_to(outside)
    with pytest.raises(Exception, match="outside the workspace"):
        tools.write_file({"path": "escape", "content": "x"})
    assert not outside.exists()


def test_the_check_and_agent_shell_share_the_same_sandbox(agent):
    settings, worktree, _tools, _cache = agent
    code, output = worktree_shell(settings, worktree).run("env", timeout=10)
    assert code == 0 and "CADRE_REDIS_URL" not in output and "HOME=/tmp/home" in output


def test_an_agent_command_can_read_the_files_its_command_line_names_and_nothing_else_in_tmp(agent, tmp_path):
    """A command backend whose script lives under /tmp (hidden by the sandbox's private /tmp): the paths the
    operator wrote into the command are readable, its placeholders and other files are not."""
    from orchestrator.agent.backends import paths_named, preset_for

    settings, worktree, _tools, _cache = agent
    script, config, other = tmp_path / "agent.py", tmp_path / "agent.toml", tmp_path / "other.txt"
    for path in (script, config, other):
        path.write_text(f"contents of {path.name}\n")
    settings = settings.model_copy(update={"worker_backend": "command", "worker_command":
                                           f"python3 {script} --config={config} /nowhere {{prompt_file}}"})
    named = paths_named(preset_for("command", settings))
    assert named == (script, config)
    code, output = shell_for(settings, worktree, readable=named).run(f"cat {script} {config}; cat {other}", timeout=30)
    assert "contents of agent.py" in output and "contents of agent.toml" in output
    assert "contents of other.txt" not in output


@dataclass(frozen=True)
class PrivilegedBubblewrap(Bubblewrap):
    """What the sandbox was before #23: no user namespace, no dropped capability (root keeps them all)."""

    def wrap(self, argv, place):
        return [self.binary, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev",
                "--proc", "/proc", "--chdir", str(place.workdir), "--", *argv]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root keeps capabilities in a sandbox without a user namespace")
def test_the_start_up_probe_refuses_a_privileged_sandbox(tmp_path):
    with pytest.raises(SandboxUnavailable, match="would be privileged"):
        check_sandbox(PrivilegedBubblewrap(), tmp_path / "probe")
    check_sandbox(Bubblewrap(identity_dir=tmp_path / "ids"), tmp_path / "probe")


def test_no_capability_no_root_and_no_user_namespace_inside(agent):
    _settings, _worktree, tools, _cache = agent
    out = bash(tools, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; id -u; unshare -Ur id 2>&1")
    assert out.count("0000000000000000") == 3 and "NoNewPrivs:\t1" in out, out
    assert "\n1000\n" in out and "uid=0" not in out, out


def test_a_virtualenv_under_tmp_and_its_interpreter_home_are_usable_inside(agent, tmp_path):
    """A worker running from a virtualenv under /tmp (hidden by the private /tmp) whose interpreter lives in a
    home (a pyenv Python): `python` works inside; what Cadre hides stays hidden even inside shown paths."""
    settings, worktree, _tools, _cache = agent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "secret.txt").write_text("hidden inside a shown folder\n")
    settings = settings.model_copy(update={"sandbox_hidden": [venv / "secret.txt"]})
    path = f"{venv / 'bin'}:/usr/bin:/bin"
    shell = shell_for(settings, worktree, extra_env={"PATH": path})
    code, out = shell.run("python -c 'import sys, json; print(sys.prefix)'; cat " + str(venv / "secret.txt"), 60)
    assert str(venv) in out and "hidden inside" not in out, out


def test_the_system_is_an_allowlist(agent, tmp_path):
    settings, _worktree, tools, _cache = agent
    out = bash(tools, f"ls / ; cat /etc/shadow 2>&1 | head -1; ls {Path.cwd()} 2>&1 | head -2; ls /etc/systemd 2>&1")
    top = set(out.split())
    assert {"usr", "etc", "tmp", "proc", "dev"} <= top and not {"home", "run", "srv", "mnt"} & top, out
    assert "root:" not in out and "pyproject.toml" not in out, out
