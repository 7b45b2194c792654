"""Workers elsewhere reach Redis over TLS: certificates from `scripts/make-redis-certs`, a `rediss://` URL
with the CA file, and a whole run (planner, worker, judge, the CLI) across it. Plain text is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.state.models import RunStatus
from orchestrator.state.records import StoreUnavailable, connect
from orchestrator.state.store import Store
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.integration.policies import single_item_plan
from tests.services import RedisServer, git

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tls_redis(tmp_path):
    certs = tmp_path / "tls"
    subprocess.run([str(ROOT / "scripts" / "make-redis-certs"), str(certs), "127.0.0.1", "localhost"], check=True,
                   capture_output=True)
    server = RedisServer(tmp_path / "redis-tls", password="tls-test-password", tls_dir=certs).start()
    yield server, certs
    server.stop()


def test_a_run_goes_through_a_tls_only_redis(cadre, remote, tls_redis):
    server, certs = tls_redis
    with pytest.raises(StoreUnavailable):  # the certificate is checked: no CA, no connection
        connect(server.url)
    store = Store(connect(server.url, tls={"ssl_ca_certs": str(certs / "ca.crt"), "ssl_cert_reqs": "required"}))
    with ScriptedModelServer(single_item_plan("write tls.txt: over tls")) as model:
        stack = cadre(model.base_url, CADRE_REDIS_URL=server.url, CADRE_REDIS_TLS_CA_FILE=str(certs / "ca.crt"))
        for role in ("planner", "worker", "judge"):
            stack.worker(role)
        started = stack.cli("run", "--repo", str(remote), "--goal", "write over TLS", "--wait", timeout=180)
        assert started.returncode == 0, f"{started.stderr}\n{stack.logs()[-3000:]}"
        run_id = started.stdout.splitlines()[0]
        status = stack.cli("status", run_id, "--json")
        assert status.returncode == 0 and '"status": "done"' in status.stdout
    assert store.runs.get(run_id).status is RunStatus.DONE
    assert git("show", "main:tls.txt", cwd=remote) == "over tls"
    plain = stack.cli("status", run_id, env_override={"CADRE_REDIS_URL": server.url.replace("rediss://", "redis://")})
    assert plain.returncode == 2 and "Redis unreachable" in plain.stderr
