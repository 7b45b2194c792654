"""Demo and local-only tooling: never imported by production code.

- `scripted_model`: an OpenAI-compatible server whose replies come from a Python policy (tests, demo).
- `demo_model`: the deterministic demo model's policy; `sample_project`: the demo's sample repository.
- `processes`: a private redis-server and `cadre` subprocesses; `up`: `cadre up`; `demo`: `cadre demo`.

Only the `cadre demo`, `cadre up` and `cadre sample-repo` commands, tests and benchmarks import it.
"""
