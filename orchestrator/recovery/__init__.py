"""Recovery: what finds work a lost message, a dead worker or a dead judge left behind, and sends it on.

- `tick`: the periodic safety net (`cadre beat`), which runs the others and the budget check for every run.
- `reaper`: attempts whose lease lapsed are requeued (or failed past the attempt bound).
- `resend`: pending items, planner nodes and judged cycles that are neither queued nor running are sent again.
- `sweeper`: pending refs nobody waits for are deleted from the remote.

Every step is an idempotent transition on the current state, so running it twice, or racing the normal
trigger, is harmless.

May import `orchestrator.config`, `.state`, `.git`, `.queues`, `.flow` and `.landing`.
"""
