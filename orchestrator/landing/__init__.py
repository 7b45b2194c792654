"""Landing: how a worker's commit gets onto the branch, or onto its rescue branch, never lost.

- `protocol`: the `Landing` seam an attempt lands through; `strategy`: the one chosen from the settings.
- `direct`: the worker fetches, rebases and pushes itself; `queue`: it hands the commit to the branch's
  `lander`, which lands batches by plumbing with one compare-and-swap push.
- `rescue`: the attempt's rescue branch; `trailers`: the trailer block naming a commit's item and attempt;
  `outcomes`: typed results, answers and errors.

May import `orchestrator.config`, `.state`, `.git` and `.untrusted`.
"""
