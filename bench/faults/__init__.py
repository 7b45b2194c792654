"""Fault injection on a real local stack, for `bench/fault_injection.py` (a benchmark, not product code).

    policy.py      the scripted model's answers (planner, workers, a judge that may reply slowly)
    netns.py       a network namespace joined by a veth pair: a second "host" whose network can be cut
    stack.py       the local stack: a private redis-server, `cadre` processes, a bare git remote
    tally.py       what a trial left on the branch: landed once, duplicated, lost, recovery times
    injections.py  the faults, one function each
"""
