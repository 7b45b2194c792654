"""A run seen from anywhere: transcripts streamed to Redis (read from a third machine's data directory, also
for an attempt whose host was killed), attempts with their hosts, Cadre's Prometheus metrics, and a
Grafana dashboard whose every query names a metric Cadre or Flower serves."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import Gate, single_item_plan
from tests.integration.test_cycle import run_and_wait, start_stack
from tests.integration.test_reliability import claim_of, process_running, start_run, wait_done
from tests.services import CadreProcess, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FAST = {"CADRE_LEASE_SECONDS": "3", "CADRE_TICK_SECONDS": "1"}


def test_trace_reads_transcripts_from_any_machine_even_after_their_host_died(cadre, remote, store, tmp_path):
    gate = Gate(single_item_plan("write t.txt: traced"))
    with ScriptedModelServer(gate) as server:
        central = cadre(server.base_url, CADRE_DATA_DIR=str(tmp_path / "central"), **FAST)
        central.worker("planner")
        central.worker("judge")
        central.beat()
        hosts = [cadre(server.base_url, CADRE_DATA_DIR=str(tmp_path / f"host{k}"), **FAST) for k in (1, 2)]
        workers = [host.worker("worker") for host in hosts]
        viewer = cadre(server.base_url, CADRE_DATA_DIR=str(tmp_path / "viewer"))
        run_id = start_run(central, remote)
        claim = wait_until(lambda: gate.waiting and claim_of(store, run_id), 60, "no claim")
        item_id = claim["item_id"]
        os.killpg(process_running(workers, claim).process.pid, signal.SIGKILL)  # its host dies mid-item
        trace = viewer.cli("trace", item_id, "--attempt", "1")
        assert trace.returncode == 0 and "Your task: write t.txt: traced" in trace.stdout, trace.stderr
        followed = viewer.cli("trace", item_id, "--attempt", "1", "--follow", timeout=60)
        assert followed.returncode == 0, "--follow ends once the dead attempt is no longer running"
        gate.open()
        wait_done(store, run_id, central)
    assert not any((tmp_path / "viewer").rglob("*.jsonl")), "the viewer has no transcript files of its own"
    whole = viewer.cli("trace", item_id)
    assert whole.returncode == 0 and f"worker-{item_id}-1" in whole.stdout and f"worker-{item_id}-2" in whole.stdout
    assert "finish" in whole.stdout and "done as asked" in whole.stdout
    status = json.loads(viewer.cli("status", run_id, "--json").stdout)
    [task] = status["items"]
    assert status["tasks"] == status["items"], "`tasks` stays an alias of `items` for one release"
    first, second = task["attempts"]
    assert first["outcome"] == "lost" and second["outcome"] == "landed"
    assert all(a["host"] and a["celery_hostname"].startswith("worker-") and a["node"] == a["celery_hostname"]
               and a["end"] > a["start"] for a in (first, second))
    report = viewer.cli("report", run_id).stdout
    assert f"| {item_id} | 1 | {first['host']} | {first['celery_hostname']} |" in report and "| lost |" in report


def scrape(url: str, auth: str | None = None) -> dict:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return {f.name: f for f in text_string_to_metric_families(response.read().decode())}


def value(families: dict, name: str, **labels) -> float:
    return sum(s.value for s in families[name].samples
               if s.name in (name, f"{name}_total") and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_match_the_run_and_the_dashboard_queries_exist(cadre, remote, store, tmp_path):
    with ScriptedModelServer(single_item_plan("write m1.txt: one", "write m2.txt: two")) as server:
        stack = start_stack(cadre, server, workers=2)
        result, run_id, status = run_and_wait(stack, remote, "Count everything.")
    assert result.returncode == 0, result.stderr
    port, flower_port = free_port(), free_port()
    metrics = CadreProcess(["metrics", "--port", str(port)], stack.env, tmp_path / "metrics.log")
    flower = CadreProcess(["--app", "orchestrator.queues.app:app", "flower", f"--port={flower_port}",
                           "--address=127.0.0.1", "--basic-auth=admin:pw"], stack.env, tmp_path / "flower.log",
                          program=[sys.executable, "-m", "celery"])
    try:
        ours = wait_until(lambda: _try(scrape, f"http://127.0.0.1:{port}/metrics"), 30, metrics.log())
        flowers = wait_until(lambda: _try(scrape, f"http://127.0.0.1:{flower_port}/metrics", "admin:pw"), 30,
                             flower.log())
    finally:
        metrics.stop()
        flower.stop()
    landed = sum(1 for t in status["items"] if t["commit"])
    assert value(ours, "cadre_runs", status="done") == 1 and landed == 2
    assert value(ours, "cadre_landings") == landed and value(ours, "cadre_rescues") == 0
    for role, usage in status["usage_by_role"].items():
        assert value(ours, "cadre_tokens", role=role) == usage["tokens"]
        assert value(ours, "cadre_cost_usd", role=role) == pytest.approx(usage["cost_usd"], abs=1e-6)
    attempts = [s for s in ours["cadre_attempt_duration_seconds"].samples
                if s.name == "cadre_attempt_duration_seconds_count" and s.labels["outcome"] == "landed"]
    assert [s.value for s in attempts] == [2.0]
    assert value(ours, "cadre_queue_length", queue="work") == 0 and "cadre_items" in ours
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "cadre-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    served = set(ours) | set(flowers)
    for query in queries:
        for metric in re.findall(r"\b((?:cadre|flower)_[a-z_]+)", query):
            family = re.sub(r"_(total|bucket|sum|count)$", "", metric)
            assert family in served, f"{query!r} names {metric}, which neither Cadre nor Flower serves"
    assert any("flower_" in q for q in queries) and len(queries) >= 10


def _try(action, *args):
    try:
        return action(*args)
    except OSError:
        time.sleep(0.3)
        return None


def test_transcripts_are_compressed_capped_and_expire(redis_client):
    from orchestrator.state.keys import Keys
    from orchestrator.state.transcripts import TranscriptStore

    transcripts = TranscriptStore(redis_client, max_bytes=20_000, retention_seconds=3600)
    repetitive = json.dumps({"type": "tool", "output": "the same long output again and again " * 200})
    transcripts.append("run-t", "worker-item-t-1", repetitive, "item-t")
    assert int(redis_client.get(Keys.transcript_size("run-t", "worker-item-t-1"))) < len(repetitive) / 10
    kept = [transcripts.append("run-t", "worker-item-t-1", json.dumps({"type": "tool", "output": os.urandom(2000).hex()}),
                               "item-t") for _ in range(40)]
    assert kept[:5] == [True] * 5 and kept[-1] is False, "it stops at its cap"
    lines = list(transcripts.lines("run-t", "worker-item-t-1"))
    assert lines[0] == repetitive and json.loads(lines[-1])["type"] == "truncated"
    assert 0 < redis_client.ttl(Keys.transcript("run-t", "worker-item-t-1")) <= 3600
    assert transcripts.names("item-t") == ["worker-item-t-1"]


def test_flower_and_health_keep_working_with_celerys_traffic_thinned(cadre, remote, tmp_path):
    """Workers run without gossip or mingle, with a heartbeat every 10 s, no task-sent events and their task
    events in batches (Cadre's default), and Flower sends no enable_events broadcasts: Flower still shows them
    online long after their last task, counts their tasks, and sees a stopped one go offline; `cadre health`
    still answers."""
    with ScriptedModelServer(single_item_plan("write f1.txt: one", "write f2.txt: two")) as server:
        stack = cadre(server.base_url)
        stack.worker("planner")
        stack.worker("judge")
        workers = [stack.worker("worker"), stack.worker("worker")]
        flower_port = free_port()
        flower = CadreProcess(["--app", "orchestrator.queues.app:app", "flower", f"--port={flower_port}",
                               "--address=127.0.0.1", "--enable_events=False"], stack.env, tmp_path / "flower.log",
                              program=[sys.executable, "-m", "celery"])
        try:
            result, _run_id, _status = run_and_wait(stack, remote, "Two files.")
            assert result.returncode == 0, result.stderr
            url = f"http://127.0.0.1:{flower_port}/metrics"
            time.sleep(25)  # past two heartbeat periods after the run: alive means heartbeats still arrive
            online = wait_until(lambda: _online_workers(_try(scrape, url)), 30, flower.log())
            assert {"worker-1", "worker-2"} <= {name.split("@")[0] for name in online}, online
            events = scrape(url)
            assert value(events, "flower_events", type="task-succeeded", task="cadre.execute_work_item") == 2
            assert value(events, "flower_events", type="task-sent") == 0
            health = stack.cli("health", "--role", "worker", "--index", "1")
            assert health.returncode == 0 and "alive" in health.stdout, health.stderr
            workers[1].stop()
            wait_until(lambda: len(_online_workers(_try(scrape, url))) == len(online) - 1, 30,
                       "a stopped worker should go offline in Flower")
        finally:
            flower.stop()


def _online_workers(families: dict | None) -> set[str]:
    if not families or "flower_worker_online" not in families:
        return set()
    return {s.labels["worker"] for s in families["flower_worker_online"].samples if s.value == 1}
