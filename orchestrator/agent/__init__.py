"""The agent: what runs a model with tools, and where its commands run.

- `loop`: the builtin tool-calling loop and its transcript; `tools`: the file and shell tools.
- `model_access`: model calls through litellm (the only module that imports litellm).
- `commands`: the one seam for running commands (the agent's shell, external agents, checks).
- `sandbox`: bubblewrap without privilege; `sandbox_view`: what of the host it shows (an allowlist);
  `sandbox_init`: the first program inside (limits, the egress bridge); `sandbox_cgroup`: a cgroup per
  command where root can make one; `egress`: the proxy that is an external agent's only way out.
- `backends`: worker backends (builtin, external agent presets, a command template).
- `prompts`: the role prompt templates, rendered strictly.

May import `orchestrator.config` and `orchestrator.untrusted` only: accounting, budgets and stop checks live
in `orchestrator.flow`.
"""
