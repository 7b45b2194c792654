"""`cadre beat`'s tick is the safety net: a cycle whose judge trigger was lost still gets judged."""

from __future__ import annotations

import pytest

from orchestrator.state.models import RunStatus
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.conftest import wait_until
from tests.integration.policies import single_item_plan

pytestmark = pytest.mark.integration


def test_tick_judges_a_cycle_whose_trigger_was_lost(cadre, remote, store):
    with ScriptedModelServer(single_item_plan()) as server:
        stack = cadre(server.base_url, CADRE_TICK_SECONDS="1")
        result = stack.cli("run", "--repo", str(remote), "--goal", "nothing to do")
        run_id = result.stdout.splitlines()[0]
        root_id = store.cycles.get(run_id, 1).root_node_id
        # The root planner ends without anyone noticing: no planner process, no settle trigger.
        store.nodes.start(root_id, run_id)
        store.nodes.finish_planning(root_id, "finished, but the trigger was lost")
        stack.worker("judge")
        stack.beat()
        wait_until(lambda: store.runs.get(run_id).status is RunStatus.DONE, 60,
                   f"the tick did not close the cycle\n{stack.logs()}")
    assert [e.type for e in store.events.read(run_id)].count("cycle_judging") == 1
