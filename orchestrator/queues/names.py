"""Task names and queues: the contract between the Celery app and the task modules (no imports)."""

PLAN_NODE = "cadre.plan_node"
EXECUTE_WORK_ITEM = "cadre.execute_work_item"
JUDGE_CYCLE = "cadre.judge_cycle"
TICK = "cadre.tick"
CHECK_BRANCH = "cadre.check_branch"
SWEEP_PENDING_REFS = "cadre.sweep_pending_refs"

QUEUE_BY_ROLE = {"planner": "plan", "worker": "work", "judge": "judge"}
TASK_MODULES_BY_ROLE = {"planner": "planners.tasks", "worker": "workers.tasks", "judge": "judge.tasks"}
