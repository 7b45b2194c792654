"""A repository URL with credentials (`http://user:token@host/repo.git`, served here over smart HTTP that
demands them): the run lands its work through it, and the token is in no record, status, event, log,
transcript or git config of Cadre's."""

from __future__ import annotations

import json

import pytest

from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.git_http import GitHttpServer
from tests.integration.policies import single_item_plan
from tests.services import git

pytestmark = pytest.mark.integration
TOKEN = "ghp-secret-token-8c1f0a93"


def test_credentials_in_the_repository_url_are_used_but_never_shown_or_stored(cadre, remote, store):
    with GitHttpServer(remote.parent, "alice", TOKEN) as git_server, \
            ScriptedModelServer(single_item_plan("write cred.txt: via http")) as model:
        url = git_server.url("remote.git")
        stack = cadre(model.base_url)
        for role in ("planner", "worker", "judge"):
            stack.worker(role)
        started = stack.cli("run", "--repo", url, "--goal", "write through an authenticated remote", "--wait",
                            timeout=180)
        assert started.returncode == 0, f"{started.stderr}\n{stack.logs()[-3000:]}"
        run_id = started.stdout.splitlines()[0]
        status = stack.cli("status", run_id, "--json").stdout
    assert git("show", "main:cred.txt", cwd=remote) == "via http"
    assert json.loads(status)["repo"] == url.replace(TOKEN, "***") and TOKEN not in status
    assert store.runs.get(run_id).repo == url.replace(TOKEN, "***")
    shown = [status, started.stdout, started.stderr, stack.logs(), str(store.events.read(run_id))]
    shown += [p.read_text() for p in stack.data_dir.rglob("*.jsonl")]
    shown += [p.read_text() for p in stack.data_dir.glob("caches/*.git/config")]
    assert all(TOKEN not in text for text in shown)
