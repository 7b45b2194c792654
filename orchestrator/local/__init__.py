"""The local stack and its commands: never imported by production code.

- `processes`: a private redis-server and `cadre` subprocesses; `up`: `cadre up`; `demo`: `cadre demo`.
- `demo_model`: the deterministic demo model's policy (served by `orchestrator.testing.scripted_model`);
  `sample_project`: the demo's sample repository.

May import every other room of `orchestrator` (the demo serves its model with `orchestrator.testing`).
Only the `cadre demo`, `cadre up` and `cadre sample-repo` commands, tests and benchmarks import it.
"""
