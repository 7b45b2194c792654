"""The agent: what runs a model with tools, and where its commands run.

- `loop`: the builtin tool-calling loop and its transcript; `tools`: the file and shell tools.
- `model_access`: model calls through litellm (the only module that imports litellm).
- `commands`: the one seam for running commands (the agent's shell, external agents, checks).
- `backends`: worker backends (builtin, external agent presets, a command template).
- `prompts`: the role prompt templates, rendered strictly.

May import `orchestrator.config` only: accounting, budgets and stop checks live in `orchestrator.flow`.
"""
