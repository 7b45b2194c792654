"""Redis Sentinel: the Redis master dies mid-run, a Sentinel promotes the replica, every role follows it, and
the run ends done with each item landed exactly once."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.state.records import connect
from orchestrator.state.store import Store
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import Gate, single_item_plan
from tests.sentinel_cluster import MASTER_NAME, SentinelCluster
from tests.services import git

pytestmark = pytest.mark.integration


def test_a_run_survives_the_death_of_its_redis_master(cadre, remote, tmp_path):
    cluster = SentinelCluster(tmp_path / "redis").start()
    try:
        gate = Gate(single_item_plan(*(f"write s{k}.txt: {k}" for k in range(3))))
        with ScriptedModelServer(gate) as server:
            stack = cadre(server.base_url, CADRE_REDIS_URL=cluster.url, CADRE_REDIS_MASTER_NAME=MASTER_NAME,
                          CADRE_TICK_SECONDS="2", CADRE_LEASE_SECONDS="10")
            for role in ("planner", "judge"):
                stack.worker(role)
            stack.worker("worker", 2)
            stack.worker("worker", 1)
            stack.beat()
            result = stack.cli("run", "--repo", str(remote), "--goal", "Survive a failover.")
            assert result.returncode == 0, result.stderr
            run_id = result.stdout.splitlines()[0].strip()
            wait_until(lambda: gate.waiting >= 3, 120, "three items running\n" + stack.logs()[-3000:])
            old_master = cluster.master.port
            killed_at = time.monotonic()
            cluster.kill_master()
            wait_until(lambda: cluster.master_port() == cluster.replica.port, 60, "the replica is promoted")
            promoted_after = time.monotonic() - killed_at
            gate.open()
            store = Store(connect(cluster.url, patient=True, master_name=MASTER_NAME))
            wait_until(lambda: store.runs.get(run_id).status.value == "done", 240,
                       "the run ends done after the failover\n" + stack.logs()[-5000:])
            status = json.loads(stack.cli("status", run_id, "--json").stdout)
        print(f"\nmaster on {old_master} killed; replica on {cluster.replica.port} promoted after "
              f"{promoted_after:.1f} s; run done {time.monotonic() - killed_at:.1f} s after the kill")
        trailers = git("log", "--format=%(trailers:key=Cadre-Item,valueonly)", "main", cwd=remote).split()
        assert sorted(trailers) == sorted(i["id"] for i in status["items"]), "each item landed exactly once"
        assert all(i["status"] == "done" and i["commit"] for i in status["items"])
    finally:
        cluster.stop()
