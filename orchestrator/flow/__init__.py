"""How a run moves: starting and stopping runs, items settling into nodes, cycles closing, budgets, checks.

- `runs`: start, stop and the status JSON; `cycles`: settling, wake-ups, handing a cycle to the judge.
- `agent_runs`: one role's builtin agent run with usage accounting, budgets and stop checks.
- `budgets`: run budgets enforced in code; `checks`: the check command on the branch head.

May import `orchestrator.config`, `.state`, `.git`, `.agent`, `.queues` and `.untrusted`.
"""
