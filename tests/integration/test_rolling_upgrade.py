"""A rolling upgrade: processes of two versions share one run. Records written by the newer version carry
fields the older one does not know; the older one reads them, works on them and keeps those fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.state.keys import Keys
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.integration.policies import single_item_plan
from tests.integration.test_cycle import run_and_wait

pytestmark = pytest.mark.integration
NEXT_VERSION = Path(__file__).parent / "fixtures" / "next_version"


def test_an_older_worker_and_judge_work_on_records_a_newer_planner_wrote(cadre, remote, store):
    with ScriptedModelServer(single_item_plan("write up.txt: upgraded", "write up2.txt: again")) as server:
        newer = cadre(server.base_url)
        newer.env["PYTHONPATH"] = f"{NEXT_VERSION}:{newer.env['PYTHONPATH']}"
        newer.worker("planner")
        older = cadre(server.base_url)
        older.worker("worker")
        older.worker("judge")
        result, run_id, status = run_and_wait(newer, remote, "Upgrade while running.")
    assert result.returncode == 0 and status["status"] == "done", f"{result.stderr}\n{older.logs()[-3000:]}"
    for item_id in store.items.ids_of_run(run_id):
        record = json.loads(store.redis.get(Keys.item(item_id)))
        assert record["status"] == "done" and record["handoff"]["commit"]  # claimed and settled by the older worker
        assert record["next_version_note"] == "written by the next version", "the newer field survived"
