"""Planner nodes in Redis: the planning tree, its children, wake-ups and settling."""

from __future__ import annotations

from enum import Enum

import redis

from orchestrator.state.keys import Keys
from orchestrator.state.models import NodeStatus, PlannerNode, Run, now
from orchestrator.state.records import JsonRecords, TransitionRefused


class NodeSettling(Enum):
    """What `settle_or_wake` did to a node whose children may all have settled."""

    WOKEN = "woken"  # back to pending for a follow-up round
    SETTLED = "settled"  # done or failed, out of its parent's pending set
    UNCHANGED = "unchanged"  # not complete yet, or someone else acted first


class NodeRecords:
    """Planner nodes: the planning tree, each node's children, its rounds and its settling."""

    def __init__(self, records: JsonRecords):
        self.records = records
        self.redis = records.redis

    def get(self, node_id: str) -> PlannerNode:
        """The node `node_id`; UnknownRecord if there is none."""
        return self.records.load(Keys.node(node_id), PlannerNode)

    def many(self, node_ids: list[str]) -> list[PlannerNode]:
        """Load many nodes in one round trip (missing ones are skipped)."""
        return self.records.load_many([Keys.node(i) for i in node_ids], PlannerNode)

    def ids_of_run(self, run_id: str) -> list[str]:
        """Ids of every node of the run (all cycles), in creation order."""
        return list(self.redis.lrange(Keys.run_nodes(run_id), 0, -1))

    def child_ids(self, node_id: str) -> list[str]:
        """Ids of the node's children (work items and sub-planner nodes), in creation order."""
        return list(self.redis.lrange(Keys.node_items(node_id), 0, -1))

    def start(self, node_id: str, run_id: str) -> PlannerNode | None:
        """Move a pending node to `planning` (a first round or a wake-up), or park it if its run is paused at
        that very moment (check `parked` on the result); None if it is not pending."""
        def change(node: PlannerNode, run: Run) -> PlannerNode:
            if node.status is not NodeStatus.PENDING:
                raise TransitionRefused(f"node {node_id} is {node.status}")
            if run.is_paused:
                return node.model_copy(update={"parked": True})
            return node.model_copy(update={"status": NodeStatus.PLANNING, "started_at": now(), "parked": False})

        return self.records.transition_or_none(Keys.node(node_id), PlannerNode, change, seen=(Keys.run(run_id), Run))

    def finish_planning(self, node_id: str, summary: str, error: str = "") -> bool:
        """The node's agent has ended (with `error` if it failed): it now waits for its pending children.

        False if the node was not planning (someone else already finished it).
        """
        def change(node: PlannerNode) -> PlannerNode:
            if node.status is not NodeStatus.PLANNING:
                raise TransitionRefused(f"node {node_id} is {node.status}")
            return node.model_copy(update={"status": NodeStatus.WAITING, "summary": summary, "error": error})

        return self.records.transition_or_none(Keys.node(node_id), PlannerNode, change) is not None

    def settle_or_wake(self, node_id: str, max_rounds: int, may_wake: bool = True) -> NodeSettling:
        """For a waiting node whose children all settled: wake it for a follow-up round, or settle it.

        It wakes (back to `pending`, next round) if its last round created children and rounds are
        left; otherwise it settles (`done`, or `failed` if its planner failed) and leaves its parent's
        pending set in the same transaction. Returns WOKEN, SETTLED, or UNCHANGED (not complete, or
        someone else acted); exactly one caller gets WOKEN or SETTLED.
        """
        pending_key = Keys.node_pending(node_id)

        def change(node: PlannerNode) -> PlannerNode:
            if node.status is not NodeStatus.WAITING or self.redis.scard(pending_key) > 0:
                raise TransitionRefused(f"node {node_id} not complete")
            if may_wake and node.children_in_round > 0 and node.round < max_rounds and not node.error:
                return node.model_copy(update={"status": NodeStatus.PENDING, "round": node.round + 1,
                                               "children_in_round": 0, "queued_at": now()})
            return node.model_copy(update={"status": NodeStatus.FAILED if node.error else NodeStatus.DONE})

        def also(pipe, _old, new: PlannerNode) -> None:
            if new.status is not NodeStatus.PENDING and new.parent_id is not None:
                pipe.srem(Keys.node_pending(new.parent_id), node_id)

        node = self.records.transition_or_none(Keys.node(node_id), PlannerNode, change, extra_watch=(pending_key,),
                                        also=also)
        if node is None:
            return NodeSettling.UNCHANGED
        return NodeSettling.WOKEN if node.status is NodeStatus.PENDING else NodeSettling.SETTLED

    def add_child(self, parent_id: str, child_id: str, child_key: str, child_json: str, cycle_list: str,
                  cycle_limit: int, fan_out_limit: int | None = None, extra: dict[str, str] | None = None) -> str:
        """Record a child (item or sub-planner) as pending on a planning node, atomically with its bounds.

        Returns "" on success, else the reason it was refused (node not planning, a limit reached).
        """
        parent_key = Keys.node(parent_id)

        def attempt(pipe: redis.client.Pipeline) -> str:
            parent = self.records.load(parent_key, PlannerNode, pipe)
            if parent.status is not NodeStatus.PLANNING:
                return f"node {parent_id} is not planning"
            if pipe.llen(cycle_list) >= cycle_limit:
                return f"this cycle already has its maximum of {cycle_limit}"
            if fan_out_limit is not None and parent.subplanners >= fan_out_limit:
                return f"this planner already has its maximum of {fan_out_limit} sub-planners"
            update = {"children_in_round": parent.children_in_round + 1}
            if fan_out_limit is not None:
                update["subplanners"] = parent.subplanners + 1
            pipe.multi()
            pipe.set(parent_key, parent.model_copy(update=update).model_dump_json())
            pipe.set(child_key, child_json)
            pipe.sadd(Keys.node_pending(parent_id), child_id)
            pipe.rpush(Keys.node_items(parent_id), child_id)
            pipe.rpush(cycle_list, child_id)
            for key, value in (extra or {}).items():
                pipe.rpush(key, value)
            return ""

        return self.redis.transaction(attempt, parent_key, cycle_list, value_from_callable=True)

    def add_subplanner(self, child: PlannerNode, max_nodes_per_cycle: int, max_fan_out: int) -> str:
        """Record a sub-planner node as its parent's pending child; "" or the reason it was refused."""
        return self.add_child(child.parent_id, child.id, Keys.node(child.id), child.model_dump_json(),
                              Keys.cycle_nodes(child.run_id, child.cycle), max_nodes_per_cycle, max_fan_out,
                              {Keys.run_nodes(child.run_id): child.id})
