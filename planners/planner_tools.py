"""The planner's own tools: `create_task`, `spawn_subplanner`, `finish`."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from orchestrator.agent.loop import Tool, ToolError, params
from orchestrator.config.settings import CadreSettings
from orchestrator.queues.dispatch import dispatch_planner, dispatch_work_item
from orchestrator.state.models import ItemStatus, PlannerNode, Run, WorkItem, new_id
from orchestrator.state.store import Store

DUPLICATE_SIMILARITY = 0.9
DUPLICATE_WORD_OVERLAP = 0.85


def _normalised(text: str) -> str:
    """Lower case, single spaces, no sentence punctuation (file paths and flags kept intact)."""
    words = re.sub(r"[^\w./-]+", " ", text.lower()).split()
    return " ".join(w.strip(".") for w in words if w.strip("."))


def near_identical(a: str, b: str) -> bool:
    """Same words (at least 85 % shared) and nearly the same text: a rephrasing, not another task.

    Both tests are needed: "create one.txt" and "create two.txt" read alike letter by letter but
    name different work.
    """
    a, b = _normalised(a), _normalised(b)
    if a == b:
        return True
    words_a, words_b = set(a.split()), set(b.split())
    shared = len(words_a & words_b) / max(len(words_a | words_b), 1)
    return shared >= DUPLICATE_WORD_OVERLAP and SequenceMatcher(None, a, b).ratio() >= DUPLICATE_SIMILARITY


def find_duplicate(candidates: list[WorkItem], scope: str, title: str, instructions: str) -> WorkItem | None:
    """A pending, running or done item with the same scope and near-identical title and instructions."""
    for item in candidates:
        if item.status is ItemStatus.FAILED or _normalised(item.scope) != _normalised(scope):
            continue
        if near_identical(f"{title}\n{instructions}", f"{item.title}\n{item.instructions}"):
            return item
    return None


class PlannerTools:
    """Tools that let one planner node create children of its own, within the settings' bounds."""

    def __init__(self, store: Store, node: PlannerNode, settings: CadreSettings):
        self.store = store
        self.node = node
        self.settings = settings
        self.created: list[str] = []
        self.run_protects = tuple(store.runs.get(node.run_id).protect)

    def _refuse_if_run_ended(self) -> Run:
        run = self.store.runs.get(self.node.run_id)
        if run.is_over:
            raise ToolError(f"refused: the run has ended ({run.status.value}); call finish")
        return run

    def create_task(self, args: dict) -> str:
        run = self._refuse_if_run_ended()
        title, instructions = str(args.get("title", "")).strip(), str(args.get("instructions", "")).strip()
        scope = str(args.get("scope", "") or "").strip()
        if not title or not instructions:
            raise ToolError("create_task needs a non-empty title and instructions")
        try:
            priority = int(args.get("priority", 0) or 0)
        except (TypeError, ValueError):
            raise ToolError("priority must be an integer from 0 to 9") from None
        if not 0 <= priority <= 9:
            raise ToolError("priority must be an integer from 0 to 9 (higher runs first)")
        start_from = str(args.get("start_from", "") or "").strip() or None
        if start_from is not None and (start_from.startswith("-") or not re.fullmatch(r"[\w./-]+", start_from)):
            raise ToolError(f"start_from must be a branch name such as cadre/rescue/<item>/<attempt>, not {start_from!r}")
        existing = find_duplicate(self.store.items.many(self.store.items.ids_of_run(self.node.run_id)), scope, title,
                                  instructions)
        if existing is not None:
            raise ToolError(f"refused: this repeats work item {existing.id} ({existing.title!r}, "
                            f"{existing.status.value}); create something different or call finish")
        item = WorkItem(
            id=new_id("item"), run_id=self.node.run_id, cycle=self.node.cycle, node_id=self.node.id, title=title,
            instructions=instructions, scope=scope, acceptance=str(args.get("acceptance", "") or ""),
            priority=priority, start_ref=start_from, round=self.node.round,
            status=ItemStatus.AWAITING_APPROVAL if run.approve_plans else ItemStatus.QUEUED,
            may_change_protected=self._may_change_protected(run, args),
        )
        # Recorded as pending on the node before it is enqueued, so the node cannot settle early.
        refusal = self.store.items.add(item, self.settings.planning.max_tasks_per_cycle)
        if refusal:
            raise ToolError(f"refused: {refusal} work items; call finish")
        self.store.events.emit(item.run_id, "item_created", item_id=item.id, node_id=self.node.id, title=title,
                               status=item.status.value)
        self.created.append(item.id)
        if run.approve_plans:  # it waits for `cadre approve` (or `cadre reject`)
            return f"created work item {item.id}: {title} (it starts once the operator approves it)"
        dispatch_work_item(item)
        return f"created work item {item.id}: {title}"

    @staticmethod
    def _may_change_protected(run: Run, args: dict) -> bool:
        """An item may change protected paths only when its planner asks and the run allows it."""
        if args.get("change_protected") not in (True, "true", "True"):
            return False
        if not run.protect_allow_planned:
            raise ToolError(f"refused: this run protects {', '.join(run.protect)} and no item may change them; "
                            "plan the work without touching them")
        return True

    def spawn_subplanner(self, args: dict) -> str:
        self._refuse_if_run_ended()
        area, brief = str(args.get("area", "")).strip(), str(args.get("brief", "")).strip()
        if not area or not brief:
            raise ToolError("spawn_subplanner needs a non-empty area and brief")
        if self.node.depth + 1 > self.settings.planning.max_depth:
            raise ToolError(f"refused: sub-planners may nest {self.settings.planning.max_depth} levels deep and this "
                            f"planner is at depth {self.node.depth}; create work items with create_task instead")
        child = PlannerNode(id=new_id("node"), run_id=self.node.run_id, cycle=self.node.cycle,
                            parent_id=self.node.id, area=area, brief=brief, depth=self.node.depth + 1,
                            parent_round=self.node.round)
        refusal = self.store.nodes.add_subplanner(child, self.settings.planning.max_nodes_per_cycle,
                                            self.settings.planning.max_subplanners_per_node)
        if refusal:
            raise ToolError(f"refused: {refusal}; create work items with create_task instead")
        self.store.events.emit(child.run_id, "node_created", node_id=child.id, parent_id=self.node.id, area=area,
                        depth=child.depth)
        dispatch_planner(child)
        self.created.append(child.id)
        return f"spawned sub-planner {child.id} for {area}"

    def finish(self, args: dict) -> str:
        return "planning finished"

    def tools(self) -> list[Tool]:
        task_params = params(["title", "instructions"], title="short imperative title",
                             instructions="complete, self-contained instructions for one worker",
                             scope="files or directories the work is confined to (optional)",
                             acceptance="how to tell the work is done (optional)")
        task_params["properties"]["priority"] = {"type": "integer", "minimum": 0, "maximum": 9,
                                                 "description": "0-9, higher starts first (optional, default 0)"}
        task_params["properties"]["start_from"] = {
            "type": "string", "description": "continue a partial item: the rescue branch holding its work in "
                                             "progress, which the new item starts from (optional)"}
        if self.run_protects:
            task_params["properties"]["change_protected"] = {
                "type": "boolean", "description": "true if this item must change protected paths "
                                                  f"({', '.join(self.run_protects)}); only some runs allow it"}
        return [
            Tool("create_task", "Create one work item; a worker starts on it at once.", task_params,
                 self.create_task),
            Tool("spawn_subplanner", "Hand an area of the code base to a sub-planner, which plans it in parallel.",
                 params(["area", "brief"], area="the directory or subsystem it owns", brief="what to plan there"),
                 self.spawn_subplanner),
            Tool("finish", "End this planning round with a summary.",
                 params(["summary"], summary="what was planned and why"), self.finish, terminal=True),
        ]
