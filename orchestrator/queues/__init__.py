"""Celery plumbing: the app (queues, routing, reliability settings), task names, dispatch, worker signals.

The roles' tasks are named here by string only (`names`); their code lives in `planners/`,
`workers/` and `judge/`. May import `orchestrator.config` and `orchestrator.state` (the contracts).
"""
