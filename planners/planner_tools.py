"""The planner's own tools: `create_task`, `spawn_subplanner`, `finish`."""

from __future__ import annotations

from orchestrator.agent_loop import Tool, ToolError, params
from orchestrator.dispatch import dispatch_work_item
from orchestrator.models import PlannerNode, WorkItem, new_id
from orchestrator.store import Store

SUBPLANNERS_UNAVAILABLE = (
    "sub-planners are not available in this Cadre version: split the area into work items with "
    "create_task instead"
)


class PlannerTools:
    """Tools that let one planner node create children of its own."""

    def __init__(self, store: Store, node: PlannerNode, max_items_per_cycle: int):
        self.store = store
        self.node = node
        self.max_items_per_cycle = max_items_per_cycle
        self.created: list[WorkItem] = []

    def create_task(self, args: dict) -> str:
        title, instructions = str(args.get("title", "")).strip(), str(args.get("instructions", "")).strip()
        if not title or not instructions:
            raise ToolError("create_task needs a non-empty title and instructions")
        try:
            priority = int(args.get("priority", 0) or 0)
        except (TypeError, ValueError):
            raise ToolError("priority must be an integer") from None
        item = WorkItem(
            id=new_id("item"), run_id=self.node.run_id, cycle=self.node.cycle, node_id=self.node.id,
            title=title, instructions=instructions, scope=str(args.get("scope", "") or ""),
            acceptance=str(args.get("acceptance", "") or ""), priority=priority,
        )
        # Recorded as pending on the node before it is enqueued, so the node cannot settle early.
        if not self.store.add_item(item, self.max_items_per_cycle):
            raise ToolError(f"this cycle already has its maximum of {self.max_items_per_cycle} work items; "
                            "call finish")
        self.store.emit(item.run_id, "item_created", item_id=item.id, node_id=self.node.id, title=title)
        dispatch_work_item(item.id)
        self.created.append(item)
        return f"created work item {item.id}: {title}"

    def spawn_subplanner(self, args: dict) -> str:
        return SUBPLANNERS_UNAVAILABLE

    def finish(self, args: dict) -> str:
        return "planning finished"

    def tools(self) -> list[Tool]:
        task_params = params(["title", "instructions"], title="short imperative title",
                             instructions="complete, self-contained instructions for one worker",
                             scope="files or directories the work is confined to (optional)",
                             acceptance="how to tell the work is done (optional)")
        task_params["properties"]["priority"] = {"type": "integer", "description": "higher runs first (optional)"}
        return [
            Tool("create_task", "Create one work item; a worker starts on it at once.", task_params,
                 self.create_task),
            Tool("spawn_subplanner", "Hand an area of the code base to a sub-planner.",
                 params(["area", "brief"], area="the directory or subsystem", brief="what to plan there"),
                 self.spawn_subplanner),
            Tool("finish", "End planning with a summary of the work created.",
                 params(["summary"], summary="what was planned and why"), self.finish, terminal=True),
        ]
