"""Test doubles shipped with Cadre: never imported by production code (the demo may use them).

- `scripted_model`: an OpenAI-compatible chat-completions server whose replies come from a Python policy.
- `escape_model`: a scripted model's policy that plays a hostile agent (sandbox escape attempts).
- `faults`: faults injected on purpose (a broker losing a message) by tests and benchmarks.

May import `orchestrator.config`, `.state` and `.queues`; only `orchestrator.local` (the demo), tests and
benchmarks import it.
"""
