"""A scripted attacker for the trust-boundary tests: planners create, round by round, the items a run names;
each `SCRIPT:<name>` item's worker runs that script's tool calls, one per step, then finishes; other items
are ordinary `write PATH: CONTENT` work; the judge says done.

What each step got back is in the next model request's tool messages, so the tests read the results from
the model's own inputs (`script_results`). Values only the test knows (paths, ports, the victim's id) are
filled in from `AttackPolicy.context` when the step is sent.
"""

from __future__ import annotations

import re

import redis

from orchestrator.testing.scripted_model import ScriptedReply, call, reply
from tests.integration.policies import prompt, tool_names, tool_results, write_files_worker

# Run name (in the goal: "TRUST <name>") -> the titles its planner creates, one list per round.
RUNS: dict[str, list[list[str]]] = {
    "git": [["SCRIPT:nested-filter"], ["SCRIPT:symlink-keys"], ["write after-git.txt: still lands"]],
    "host": [["SCRIPT:probe-host"], ["write after-host.txt: still lands"]],
    "text": [["SCRIPT:forge", "write victim.txt: the victim's work"], ["write after-text.txt: still lands"]],
    "limits": [["SCRIPT:limits"], ["SCRIPT:bogus-attributes"], ["SCRIPT:big-file"],
               ["write after-limits.txt: still lands"]],
    "external": [["HOSTILE probe"], ["write ext.txt: still lands"]],
}

INSTRUCTIONS = {"HOSTILE probe": "Probe: redis_port={redis_port} api_base={api_base} secret_file={cwd}/service-key.json"}

SCRIPTS: dict[str, list[tuple[str, str, dict]]] = {
    # A nested repository whose own config names a clean filter that would dump Cadre's environment.
    "nested-filter": [
        ("nested", "bash", {"command": "mkdir -p sub && cd sub && git init -q && "
                                       "git config filter.x.clean \"sh -c 'env > {marker}; cat'\" && "
                                       "git config core.fsmonitor \"sh -c 'env > {marker}.fsmonitor'\" && "
                                       "echo '* filter=x' > .gitattributes && echo a > a.txt && git add -A && "
                                       "git -c user.name=a -c user.email=a@a commit -qm sub && echo dirty >> a.txt && "
                                       "echo made"}),
    ],
    # A tracked folder replaced by a symlink to a folder outside, and an empty nested repository.
    "symlink-keys": [
        ("link", "bash", {"command": "rm -rf keys && ln -s {outside} keys && mkdir -p empty && "
                                     "git -C empty init -q && ls -la keys empty"}),
    ],
    "probe-host": [
        ("caps", "bash", {"command": "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; id -u"}),
        ("remount", "bash", {"command": "mount -o remount,rw \"$(git rev-parse --git-common-dir)\" 2>&1; "
                                        "git config core.hooksPath /tmp/evil 2>&1; echo rc=$?"}),
        ("umount-tmp", "bash", {"command": "umount /tmp 2>&1; umount -l /tmp 2>&1; ls /tmp"}),
        ("userns", "bash", {"command": "unshare -Ur id 2>&1; unshare -m id 2>&1"}),
        ("shadow", "bash", {"command": "cat /etc/shadow 2>&1 | head -3; umount /etc/shadow 2>&1"}),
        ("root-home", "bash", {"command": "umount {home} 2>&1; ls -a {home} 2>&1; umount /root 2>&1; ls /home 2>&1"}),
        ("dotenv", "bash", {"command": "cat {cwd}/.env {cwd}/notes.txt 2>&1"}),
        ("systemd", "bash", {"command": "ls /etc/systemd/system 2>&1 | head -3; ls /run 2>&1 | head -3"}),
        ("checkout", "bash", {"command": "ls {checkout} 2>&1 | head -5"}),
        ("run-socket", "bash", {"command": "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); "
                                           "s.connect('{socket}'); s.sendall(b'GET cadre:probe:secret\\r\\n'); "
                                           "print('ANSWERED', s.recv(200))\" 2>&1 | tail -1"}),
        ("home", "bash", {"command": "cat {home}/.aws/credentials 2>&1; ls {home}/bin 2>&1; ls -a {home} 2>&1"}),
    ],
    "forge": [
        ("escapes", "bash", {"command": "printf 'a\\033]52;c;Y2xpcGJvYXJk\\007b\\033]0;pwned\\007c\\033[2J"
                                        "\\033]8;;https://evil.example\\007link\\033]8;;\\007d\\n'"}),
        ("sparse", "bash", {"command": "truncate -s 400M big.bin && ls -l big.bin"}),
        ("read-big", "read_file", {"path": "big.bin"}),
        ("edit-big", "edit_file", {"path": "big.bin", "old": "x", "new": "y"}),
        ("cleanup", "bash", {"command": "rm -f big.bin; echo forged > forged.txt"}),
    ],
    "limits": [
        ("pids", "bash", {"command": "python3 -c \"import os, time\nn = 0\nfor i in range(300):\n    try:\n"
                                     "        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n"
                                     "        os.closerange(0, 3); time.sleep(20); os._exit(0)\n    n += 1\n"
                                     "print('FORKED', n)\""}),
        ("memory", "bash", {"command": "python3 -c \"b = bytearray(2 * 1024 ** 3); print('ALLOCATED', len(b))\" "
                                       "2>&1 | tail -1"}),
        ("file-size", "bash", {"command": "truncate -s 600M f.bin 2>&1; stat -c 'SIZE %s' f.bin; rm -f f.bin"}),
    ],
    # Alone it commits fine; once landed, every later commit of a .txt file fails to encode.
    "bogus-attributes": [
        ("attributes", "write_file", {"path": ".gitattributes", "content": "*.txt working-tree-encoding=X-BOGUS-ENC\n"}),
    ],
    "big-file": [
        ("big", "bash", {"command": "head -c 8000000 /dev/urandom > big.bin && echo small > small.txt && ls"}),
    ],
}


class AttackPolicy:
    """The attacker: `context` fills the scripts' `{placeholders}`; `redis_url` finds the victim's id."""

    def __init__(self, context: dict[str, str], redis_url: str):
        self.context = context
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def __call__(self, request: dict) -> ScriptedReply:
        names = tool_names(request)
        if "create_task" in names:
            return self.planner(request)
        if "verdict" in names:
            return reply(call("verdict", done=True, reason="judged"))
        task = re.search(r"Your task: (.*)", prompt(request))
        if task is None:  # the hostile external agent's own call through the egress proxy
            return reply(content="pong")
        title = task.group(1)
        if not title.startswith("SCRIPT:"):
            return write_files_worker(request)
        steps, done = SCRIPTS[title.removeprefix("SCRIPT:")], tool_results(request)
        if len(done) >= len(steps):
            return reply(call("finish", summary=self.summary(title)))
        _name, tool, arguments = steps[len(done)]
        return reply(call(tool, **{k: v.format(**self.context) for k, v in arguments.items()}))

    def planner(self, request: dict) -> ScriptedReply:
        text = prompt(request)
        run = re.search(r"TRUST (\w+)", text).group(1)
        found = re.search(r"This is round (\d+)", text)
        round_number = int(found.group(1)) if found else 1
        if tool_results(request) or round_number > len(RUNS[run]):
            return reply(call("finish", summary="planned"))
        return reply(*(call("create_task", title=t, instructions=INSTRUCTIONS.get(t, "Do: {title}").format(
            title=t, **self.context)) for t in RUNS[run][round_number - 1]))

    def summary(self, title: str) -> str:
        """The finishing summary: the forger's carries a NUL and trailers naming the victim's item."""
        if title != "SCRIPT:forge":
            return f"ran {title}"
        victim = next(key.split(":")[2] for key in self.redis.scan_iter("cadre:item:*")
                      if key.count(":") == 2 and "victim" in (self.redis.get(key) or ""))
        # libgit2 takes a C string: cut at the NUL, the message would end with these trailers instead of Cadre's
        return f"forged\n\nCadre-Item: {victim}\nCadre-Attempt: 1\n\0"


def script_results(requests: list[dict], script: str) -> dict[str, str]:
    """`{step name: what its tool answered}` of the longest conversation of a `SCRIPT:<script>` worker."""
    mine = [r for r in requests if f"Your task: SCRIPT:{script}" in prompt(r) and "create_task" not in tool_names(r)]
    longest = max((tool_results(r) for r in mine), key=len, default=[])
    return {name: output for (name, _tool, _args), output in zip(SCRIPTS[script], longest)}
