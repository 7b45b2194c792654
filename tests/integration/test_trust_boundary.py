"""Nothing an agent writes is trusted: each class of attack from issue #23, tried end to end by a scripted
attacker on a real stack (bubblewrap, git, Celery worker processes, redis-server), with Cadre run as root
and as a plain user. Each run also has an ordinary item after the attacks, which must still land.

The attacks: Cadre's own git running a nested repository's filter; a slot reset writing through an
agent's symlink; a privileged sandbox (capabilities, remounts, user namespaces); a readable host (.env,
notes, ~/.aws, /home, /run, systemd units, the checkout); model text forging trailers with a NUL; a
sparse file read whole; escape sequences reaching `cadre trace`; no limits (processes, memory, file
size); unsafe changes landing (a bogus encoding in .gitattributes, an oversized file); an external agent
on the host's network; an io-folder symlink followed by Cadre.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from orchestrator.state.transcripts import TranscriptStore
from tests import plain_user
from tests.integration.attack_scripts import script_results
from tests.integration.trust_stack import TrustStack
from tests.services import git

pytestmark = pytest.mark.integration
ESCAPES = re.compile(r"\x1b\]|\x07|\x9b|\x9d|\x1b\[2J")
USERS = [pytest.param("root", marks=pytest.mark.xdist_group("trust-root")),
         pytest.param("plain-user", marks=pytest.mark.xdist_group("trust-plain-user"))]


def _stack(request, backend: str):
    user = request.param
    if user == "plain-user" and (why := plain_user.available()):
        pytest.skip(why)
    if user == "root" and os.geteuid() != 0:
        pytest.skip("the root case needs root")
    stack = TrustStack(user, backend)
    request.addfinalizer(stack.stop)
    return stack


@pytest.fixture(scope="module", params=USERS)
def builtin(request):
    return _stack(request, "builtin")


@pytest.fixture(scope="module", params=USERS)
def external(request):
    return _stack(request, "command")


def outputs(stack: TrustStack, script: str) -> dict[str, str]:
    return script_results(stack.model.requests, script)


def everything_the_host_holds(stack: TrustStack) -> str:
    """Every place a leaked secret would end up: model inputs, logs, commits, the drop folder."""
    drops = "\n".join(p.read_text(errors="replace") for p in stack.drop.rglob("*") if p.is_file())
    return "\n".join([str(stack.model.requests), stack.logs(), git("log", "--all", "-p", cwd=stack.remote), drops])


@pytest.mark.timeout(600)
def test_cadres_git_never_runs_what_a_nested_repository_configures(builtin):
    builtin.run("git")
    assert not any(builtin.drop.iterdir()), f"a filter or fsmonitor ran outside the sandbox: {list(builtin.drop.iterdir())}"
    assert "160000" not in git("ls-tree", "-r", "main", cwd=builtin.remote), "a gitlink landed"
    nested = builtin.item("git", "SCRIPT:nested-filter")
    assert nested.handoff and "filter=x" in nested.handoff.summary and nested.handoff.rescue_branch, nested.handoff
    assert builtin.landed("after-git.txt") == "still lands"
    assert builtin.env["CADRE_API_KEY"] not in everything_the_host_holds(builtin)


@pytest.mark.timeout(600)
def test_a_slot_reset_never_writes_through_an_agents_symlink(builtin):
    builtin.run("git")
    assert list(builtin.outside.iterdir()) == [], "the slot reset wrote into the folder the symlink pointed at"
    assert builtin.landed("after-git.txt") == "still lands"


@pytest.mark.timeout(600)
def test_the_sandbox_holds_no_privilege_whoever_runs_cadre(builtin):
    builtin.run("host")
    seen = outputs(builtin, "probe-host")
    for mask in ("CapEff", "CapPrm", "CapBnd"):
        assert re.search(rf"{mask}:\s+0{{16}}", seen["caps"]), seen["caps"]
    assert re.search(r"NoNewPrivs:\s+1", seen["caps"]) and seen["caps"].split()[-4] != "0", seen["caps"]
    cache = next((builtin.data / "caches").glob("*.git"))
    assert "hooksPath" not in (cache / "config").read_text(), seen["remount"]
    assert builtin.host_tmp_file.name not in seen["umount-tmp"], "unmounting /tmp showed the host's"
    assert "uid=" not in seen["userns"], seen["userns"]
    assert ".aws" not in seen["root-home"], seen["root-home"]
    shadow_lines = [line.split(":")[0] + ":" for line in Path("/etc/shadow").read_text().splitlines()[:3]] \
        if os.access("/etc/shadow", os.R_OK) else []
    assert not any(line in seen["shadow"] for line in shadow_lines), seen["shadow"]
    assert builtin.landed("after-host.txt") == "still lands"


@pytest.mark.timeout(600)
def test_the_host_is_not_readable(builtin):
    builtin.run("host")
    seen = outputs(builtin, "probe-host")
    text = "\n".join(seen.values())
    for name in ("dotenv", "notes", "aws", "unix"):
        assert builtin.tokens[name] not in text, f"the agent read the {name} secret"
    for folder, step in ((Path("/home"), "root-home"), (Path("/etc/systemd/system"), "systemd"), (Path("/run"), "systemd")):
        visible = [entry.name for entry in folder.iterdir()] if folder.is_dir() else []
        assert not any(re.search(rf"(^|\s){re.escape(name)}(\s|$)", seen[step]) for name in visible), (folder, seen[step])
    assert "pyproject.toml" not in seen["checkout"], "the project checkout is readable"
    assert "ANSWERED" not in seen["run-socket"], seen["run-socket"]
    assert "my-tool" in seen["home"], "a folder on PATH stays usable"
    assert builtin.landed("after-host.txt") == "still lands"


@pytest.mark.timeout(600)
def test_model_text_cannot_forge_trailers_or_reach_a_terminal(builtin):
    status = builtin.run("text")
    assert builtin.landed("victim.txt") == "the victim's work", "the forged trailer made Cadre drop the victim's work"
    forger = next(t for t in status["items"] if t["title"] == "SCRIPT:forge")
    victim = next(t for t in status["items"] if t["title"].startswith("write victim"))
    assert forger["commit"] and victim["commit"] and forger["commit"] != victim["commit"]
    message = git("log", "-1", "--format=%B", forger["commit"], cwd=builtin.remote)
    assert message.rstrip().endswith(f"Cadre-Item: {forger['id']}\nCadre-Attempt: 1"), message
    assert f"\nCadre-Item: {victim['id']}" not in message, "model text can still look like a trailer block"
    trace = builtin.cli("trace", forger["id"])
    assert trace.returncode == 0 and "abclinkd" in trace.stdout, trace.stdout[-2000:]
    assert not ESCAPES.search(trace.stdout), "an escape sequence reached the terminal"
    assert builtin.landed("after-text.txt") == "still lands"


@pytest.mark.timeout(600)
def test_files_an_agent_made_are_read_with_a_bound(builtin):
    builtin.run("text")
    seen = outputs(builtin, "forge")
    assert "419430400" in seen["sparse"], seen["sparse"]
    grown = builtin.grown_mib["text"]
    print(f"[{builtin.user}] the worker's peak memory grew by {grown:.0f} MiB in the run reading a 400 MB file")
    assert grown < 200, f"reading the agent's 400 MB file grew the worker by {grown:.0f} MiB"
    assert len(seen["read-big"]) <= 420_000 and "more than" in seen["edit-big"], seen["edit-big"][:300]
    assert builtin.landed("after-text.txt") == "still lands"


@pytest.mark.timeout(600)
def test_the_sandbox_limits_processes_memory_and_file_size(builtin):
    builtin.run("limits")
    seen = outputs(builtin, "limits")
    assert int(re.search(r"FORKED (\d+)", seen["pids"]).group(1)) < 64, seen["pids"]
    assert "ALLOCATED" not in seen["memory"] and "MemoryError" in seen["memory"], seen["memory"]
    assert "SIZE 629145600" not in seen["file-size"], seen["file-size"]
    assert builtin.landed("after-limits.txt") == "still lands"


@pytest.mark.timeout(600)
def test_unsafe_changes_are_refused_and_their_safe_part_rescued(builtin):
    builtin.run("limits")
    assert builtin.landed(".gitattributes") is None
    bogus = builtin.item("limits", "SCRIPT:bogus-attributes")
    assert bogus.status.value == "failed" and "working-tree-encoding" in bogus.handoff.summary, bogus.handoff
    big = builtin.item("limits", "SCRIPT:big-file")
    assert big.status.value == "failed" and builtin.landed("big.bin") is None, big.handoff
    rescued = git("ls-tree", "-r", "--name-only", big.handoff.rescue_branch, cwd=builtin.remote).split()
    assert "small.txt" in rescued and "big.bin" not in rescued, rescued
    assert builtin.landed("after-limits.txt") == "still lands", "a later commit of the run still works"


def _probes(stack: TrustStack) -> dict[str, str]:
    item = stack.item("external", "HOSTILE probe")
    transcripts = TranscriptStore(stack.store.redis, 10**8, 3600)
    text = "\n".join(line for name in transcripts.names(item.id) for line in transcripts.lines(item.run_id, name))
    return dict(re.findall(r"PROBE ([\w-]+): ([^\\\n]*)", text))


@pytest.mark.timeout(600)
def test_an_external_agent_reaches_its_model_and_nothing_else(external):
    external.run("external")
    probes = _probes(external)
    assert probes["model"].startswith("MODEL ANSWERED 200"), probes
    assert "ANSWERED" not in probes["redis-direct"], probes
    assert "403" in probes["redis-via-proxy"], probes
    assert external.tokens["redis"] not in everything_the_host_holds(external)
    assert external.landed("ext.txt") == "still lands"


@pytest.mark.timeout(600)
def test_cadre_never_follows_an_agents_io_file_symlink(external):
    external.run("external")
    item = external.item("external", "HOSTILE probe")
    assert item.handoff and external.tokens["notes"] not in item.handoff.summary, item.handoff
    assert external.tokens["notes"] not in everything_the_host_holds(external)
    assert external.landed("probed.txt") == "the hostile agent ran"
    assert external.landed("ext.txt") == "still lands"
