"""Records and answers written by an earlier version still read right after the renames of the house's second
pass (an attempt's `node` is now `celery_hostname`; outcomes are enumerations), and the new names are what is
written."""

from __future__ import annotations

import json

from orchestrator.landing.lander import LandingAnswer
from orchestrator.landing.outcomes import Answer
from orchestrator.state.models import Attempt, AttemptOutcome, ItemStatus, Run, RunStatus, WorkItem


def test_an_attempt_recorded_with_node_reads_as_celery_hostname():
    old = {"number": 1, "host": "h1", "node": "worker@h1", "pid": 7, "started_at": 1.0, "ended_at": 2.0,
           "outcome": "lost"}
    attempt = Attempt.model_validate(old)
    assert attempt.celery_hostname == "worker@h1" and attempt.outcome is AttemptOutcome.LOST
    written = json.loads(attempt.model_dump_json())
    assert written["celery_hostname"] == "worker@h1" and "node" not in written and written["outcome"] == "lost"


def test_an_item_of_an_earlier_version_round_trips_with_its_attempts():
    item = WorkItem.model_validate({"id": "item-1", "run_id": "run-1", "cycle": 1, "node_id": "node-1", "title": "t",
                                    "instructions": "i",
                                    "attempts": [{"number": 1, "host": "h", "node": "worker@h", "outcome": "landed"}]})
    again = WorkItem.model_validate_json(item.model_dump_json())
    assert again.attempts[0].celery_hostname == "worker@h" and again.attempts[0].outcome is AttemptOutcome.LANDED


def test_run_is_over_once_it_ended_and_paused_only_while_paused_or_draining():
    run = Run(id="run-1", repo="r", branch="main", goal="g", max_cycles=1)
    live = {RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.DRAINING}
    assert {s for s in RunStatus if not run.model_copy(update={"status": s}).is_over} == live
    assert {s for s in RunStatus if run.model_copy(update={"status": s}).is_paused} == live - {RunStatus.RUNNING}


def test_an_item_queued_by_an_earlier_version_reads_as_queued():
    item = WorkItem.model_validate({"id": "item-1", "run_id": "run-1", "cycle": 1, "node_id": "node-1", "title": "t",
                                    "instructions": "i", "status": "pending"})
    assert item.status is ItemStatus.QUEUED and json.loads(item.model_dump_json())["status"] == "queued"


def test_a_landing_answer_reads_and_writes_the_json_every_version_speaks():
    old = '{"status": "conflict", "commit": null, "conflicted_paths": ["a.txt"]}'
    answer = LandingAnswer.from_json(old)
    assert answer.status is Answer.CONFLICT and answer.conflicted_paths == ["a.txt"]
    assert json.loads(answer.to_json()) == json.loads(old)
