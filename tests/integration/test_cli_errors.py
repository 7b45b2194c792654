"""Bad input gets one clear line on stderr, exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.services import free_port

pytestmark = pytest.mark.integration


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def stack(cadre):
    return cadre("http://127.0.0.1:9/v1")


def test_redis_unreachable(cadre, remote):
    stack = cadre("http://127.0.0.1:9/v1", CADRE_REDIS_URL=f"redis://:hunter2secret@127.0.0.1:{free_port()}/0")
    assert_one_line_error(stack.cli("status"), "Redis unreachable", "***")
    result = stack.cli("run", "--repo", str(remote), "--goal", "x")
    assert_one_line_error(result, "Redis unreachable")
    assert "hunter2secret" not in result.stderr
    assert_one_line_error(stack.cli("worker", "--role", "worker"), "Redis unreachable")


def test_bad_run_requests_write_nothing(stack, remote, redis_client, tmp_path):
    assert_one_line_error(stack.cli("run", "--repo", str(remote), "--goal", "  "), "goal is empty")
    assert_one_line_error(stack.cli("run", "--repo", str(tmp_path / "nope.git"), "--goal", "x"),
                          "cannot reach repository")
    assert_one_line_error(stack.cli("run", "--repo", str(remote), "--goal", "x", "--branch", "nope"),
                          "branch nope not found")
    assert redis_client.keys("cadre:*") == []


def test_unknown_run_id(stack, redis_client):
    assert_one_line_error(stack.cli("status", "run-doesnotexist"), "unknown run id run-doesnotexist")
    assert_one_line_error(stack.cli("stop", "run-doesnotexist"), "unknown run id")


def test_role_without_model(cadre, remote, redis_client):
    stack = cadre(None)
    assert_one_line_error(stack.cli("worker", "--role", "worker"), "no model configured for role worker",
                          "CADRE_WORKER_MODEL")
    assert_one_line_error(stack.cli("run", "--repo", str(remote), "--goal", "x"), "no model configured")
    assert_one_line_error(stack.cli("worker", "--role", "wizard"), "unknown role")
    assert_one_line_error(stack.cli("worker", "--role", "worker", "--pool", "gevent"), "unknown pool")
    assert_one_line_error(stack.cli("worker", "--role", "worker", "--max-tasks", "1", "--concurrency", "2"),
                          "--max-tasks needs --concurrency 1")
    assert_one_line_error(stack.cli("worker", "--role", "worker", env_override={"CADRE_WORKER_CONCURRENCY": "x"}),
                          "CADRE_WORKER_CONCURRENCY='x' is not a number of slots")
    # Light slots: a threads pool of several slots is a valid choice (this one stops at the missing model).
    assert_one_line_error(stack.cli("worker", "--role", "worker", "--pool", "threads", "--concurrency", "2"),
                          "no model configured for role worker")
    assert redis_client.keys("cadre:*") == []


def test_a_worker_refuses_to_start_where_the_sandbox_cannot_run(cadre, tmp_path):
    """A container without the privileges bubblewrap needs: bwrap fails as it does there (a stand-in
    program that prints bwrap's own message); the worker refuses with one line naming the fix."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    stack = cadre("http://127.0.0.1:9/v1")
    path = f"{fake}:{stack.env['PATH']}"
    refused = stack.cli("worker", "--role", "worker", env_override={"PATH": path})
    assert_one_line_error(refused, "agent sandbox cannot start here", "No permissions", "seccomp=unconfined",
                          "CADRE_SANDBOX=off")
    for role in ("planner", "judge"):
        assert_one_line_error(stack.cli("worker", "--role", role, env_override={"PATH": path}), "agent sandbox")
    on_purpose = cadre("http://127.0.0.1:9/v1", PATH=path, CADRE_SANDBOX="off")
    started = on_purpose.worker("worker")
    wait_until(lambda: " ready." in started.log() or started.process.poll() is not None, 120,
               f"CADRE_SANDBOX=off did not start the worker\n{on_purpose.logs()}")
    assert on_purpose.cli("health", "--role", "worker", "--index", "1").returncode == 0, on_purpose.logs()
