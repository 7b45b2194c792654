"""Cadre's state: the records (frozen pydantic contracts) and the Redis store that holds them.

- `models`: runs, cycles, planner nodes, work items, handoffs, verdicts, events.
- `store`: `Store`, one object holding the parts below, and `get_store()`.
- `runs`, `nodes`, `items`, `events`: the parts; `records`: connection and atomic transitions; `keys`.

May import `orchestrator.config` only.
"""
