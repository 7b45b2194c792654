"""Cadre's shared core, in rooms by concern (each room's docstring says what it may import):

    config   settings and secret masking                      (imports nothing of Cadre)
    state    records and the Redis store                       config
    git      every git command; GitPython in one module        config
    agent    agent loop, model access, tools, backends         config
    queues   Celery app, task names, dispatch, worker signals  config state (contracts)
    flow     runs, cycles, budgets, checks, agent accounting   config state git agent queues
    cli      the `cadre` command and its views                 all of the above
    local    demo model, scripted server, sample project, local stack (never imported by production code)

`planners/`, `workers/` and `judge/` import this package, never each other; it names their Celery
tasks by string only.
"""
