"""Real agent programs as workers: mini-swe-agent from PyPI (installed by the test setup into an environment
of its own), and stand-ins printing Claude Code's and Codex's documented reports. Runs end `done`, only the
tasks' files are committed, usage is attributed from each agent's own report, and an agent stopped at its
limit leaves a rescue branch and a `partial` handoff that a continuation item finishes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.testing.scripted_model import ScriptedModelServer, ScriptedReply, call, reply
from tests.integration.policies import prompt, single_item_plan, tool_names, tool_results
from tests.integration.test_cycle import run_and_wait, start_stack
from tests.services import git

pytestmark = pytest.mark.integration
MINI_VERSION = "2.4.6"
AIDER_VERSION = "0.86.2"
STAND_IN = Path(__file__).parent / "fixtures" / "stand_in_agents.py"


def installed_agent(package: str, program: str) -> Path:
    """`package` from PyPI in a virtualenv of its own (kept between sessions, as the agents image does);
    the folder holding its `program`."""
    root = Path(os.environ.get("CADRE_TEST_AGENTS_DIR", Path(tempfile.gettempdir()) / "cadre-test-agents"))
    venv = root / package.replace("==", "-")
    if not (venv / "bin" / program).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", package],
                                   capture_output=True, text=True, timeout=1200)
        assert installed.returncode == 0, f"pip install {package} failed:\n{installed.stderr[-2000:]}"
    return venv / "bin"


@pytest.fixture(scope="session")
def mini_bin() -> Path:
    return installed_agent(f"mini-swe-agent=={MINI_VERSION}", "mini")


@pytest.fixture(scope="session")
def aider_bin() -> Path:
    if os.environ.get("CADRE_TEST_WITH_AIDER") != "1":
        pytest.skip("aider-chat installs about 300 MB: set CADRE_TEST_WITH_AIDER=1 to run it (scripts/try-aider does)")
    return installed_agent(f"aider-chat=={AIDER_VERSION}", "aider")


@pytest.fixture
def stand_ins(tmp_path) -> Path:
    """A folder with `claude` and `codex`, both the stand-in program."""
    folder = tmp_path / "agents-bin"
    folder.mkdir()
    STAND_IN.chmod(0o755)
    for name in ("claude", "codex"):
        (folder / name).symlink_to(STAND_IN)
    return folder


def mini_worker(request: dict) -> ScriptedReply:
    """What the model behind mini-swe-agent answers: `write P: C` (write, hand off, submit), `grow P: x`
    (append a line per step, never submit: it runs into its step limit), `finish P: x` (append, submit)."""
    text, done = prompt(request), tool_results(request)
    verb, path, content = re.search(r"Your task: (\w+) (\S+): (.*)", text).groups()
    handoff = re.search(r"to the file (\S+) \(outside", text).group(1)
    if verb == "grow" or not done:
        command = f"echo '{content}' >> {path}" if verb != "write" else f"printf '%s\\n' '{content}' > {path}"
        return ScriptedReply(tool_calls=(call("bash", command=command),), prompt_tokens=1000, completion_tokens=50)
    submit = (f"echo '{{\"summary\": \"mini did {verb} {path}\"}}' > {handoff} && "
              "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")
    return ScriptedReply(tool_calls=(call("bash", command=submit),), prompt_tokens=1000, completion_tokens=50)


def with_mini(base):
    def policy(request: dict):
        return mini_worker(request) if tool_names(request) == {"bash"} else base(request)
    return policy


def landed_files(remote: Path, run_status: dict) -> set[str]:
    files = set()
    for task in run_status["items"]:
        if task["commit"]:
            files |= set(git("show", "--name-only", "--format=", task["commit"], cwd=remote).split())
    return files


@pytest.mark.timeout(600)  # three real agent programs at once: slow on 2 busy cores, not stuck
def test_mini_swe_agent_runs_three_items_in_parallel(cadre, remote, store, mini_bin):
    titles = [f"write mini{k}.txt: from mini {k}" for k in range(3)]
    with ScriptedModelServer(with_mini(single_item_plan(*titles))) as server:
        stack = start_stack(cadre, server, workers=3, CADRE_WORKER_BACKEND="mini-swe-agent",
                            PATH=f"{mini_bin}:{os.environ['PATH']}")
        result, run_id, status = run_and_wait(stack, remote, "Three files by mini.")
        mini_calls = sum(tool_names(r) == {"bash"} for r in server.requests)
    assert result.returncode == 0 and status["status"] == "done", f"{result.stderr}\n{stack.logs()[-3000:]}"
    assert landed_files(remote, status) == {f"mini{k}.txt" for k in range(3)}, \
        [store.items.get(t["id"]).handoff for t in status["items"]]
    for k in range(3):
        assert git("show", f"main:mini{k}.txt", cwd=remote) == f"from mini {k}"
    assert mini_calls >= 6 and status["usage_by_role"]["worker"]["tokens"] == 1050 * mini_calls
    assert status["usage_unreported_calls"] == 0
    handoffs = [store.items.get(t["id"]).handoff for t in status["items"]]
    assert all(h.summary.startswith("mini did write") and h.usage_reported for h in handoffs)
    attempts = [a for t in status["items"] for a in t["attempts"]]
    assert len({a["pid"] for a in attempts}) == 1, "one worker process ran them: light slots (threads)"
    assert max(a["start"] for a in attempts) < min(a["end"] for a in attempts), "all three at once"


def continuation_plan(request: dict) -> ScriptedReply:
    """Round 1: an item that outgrows its step limit; round 2: continue it from its rescue branch; then finish."""
    names, text = tool_names(request), prompt(request)
    if "verdict" in names:
        return reply(call("verdict", done=True, reason="done"))
    if tool_results(request) or "This is round 3" in text:
        return reply(call("finish", summary="planned"))
    if "This is round 2" in text:
        branch = re.search(r'start_from="([^"]+)"', text).group(1)
        return reply(call("create_task", title="finish progress.txt: finished", instructions="Finish it.",
                          start_from=branch))
    return reply(call("create_task", title="grow progress.txt: step", instructions="Grow the file."))


def test_an_agent_at_its_limit_hands_off_partial_and_a_continuation_lands(cadre, remote, store, mini_bin):
    with ScriptedModelServer(with_mini(continuation_plan)) as server:
        stack = start_stack(cadre, server, CADRE_WORKER_BACKEND="mini-swe-agent", CADRE_WORKER_MAX_STEPS="3",
                            PATH=f"{mini_bin}:{os.environ['PATH']}")
        result, run_id, status = run_and_wait(stack, remote, "Grow a file.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()[-3000:]}"
    first, second = (store.items.get(t["id"]) for t in status["items"])
    assert first.handoff.status.value == "partial" and first.status.value == "failed" and not first.handoff.commit
    assert first.handoff.rescue_branch == f"cadre/rescue/{first.id}/1" and "its step or cost limit" in first.handoff.summary
    assert git("show", f"{first.handoff.rescue_branch}:progress.txt", cwd=remote) == "step\nstep\nstep"
    assert second.start_ref == first.handoff.rescue_branch and second.handoff.commit
    assert git("show", "main:progress.txt", cwd=remote) == "step\nstep\nstep\nfinished"
    assert len(git("log", "--format=%H", f"{second.handoff.commit}~1..main", cwd=remote).split()) == 1


def test_claude_codes_report_is_read_and_its_artifacts_never_committed(cadre, remote, store, stand_ins):
    path = f"{stand_ins}:{os.environ['PATH']}"
    with ScriptedModelServer(single_item_plan("write claude.txt: by claude", "limit half.txt: half done")) as server:
        stack = start_stack(cadre, server, CADRE_WORKER_BACKEND="claude-code", PATH=path)
        result, run_id, status = run_and_wait(stack, remote, "Claude Code's turn.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()[-3000:]}"
    done, limited = (store.items.get(t["id"]) for t in status["items"])
    assert done.handoff.summary == "wrote claude.txt with scripted", "its own result, model passed its way"
    assert landed_files(remote, status) == {"claude.txt"}, ".claude/settings.local.json is never committed"
    assert limited.handoff.status.value == "partial" and "turn limit" in limited.handoff.summary
    assert ".claude/settings.local.json" not in git("show", "--name-only", limited.handoff.rescue_branch, cwd=remote)
    assert status["usage_by_role"]["worker"] == {"tokens": 2 * 2100, "cost_usd": 2 * 0.0075}


def test_codexs_events_are_read_and_its_tokens_priced(cadre, remote, store, stand_ins):
    path = f"{stand_ins}:{os.environ['PATH']}"
    with ScriptedModelServer(single_item_plan("write codex.txt: by codex")) as server:
        stack = start_stack(cadre, server, CADRE_WORKER_BACKEND="codex", PATH=path,
                            CADRE_WORKER_PRICE_PER_MTOK="[1, 2]")
        result, run_id, status = run_and_wait(stack, remote, "Codex's turn.")
    assert result.returncode == 0, f"{result.stderr}\n{stack.logs()[-3000:]}"
    [task] = status["items"]
    assert store.items.get(task["id"]).handoff.summary == "wrote codex.txt with scripted"
    # Codex reports tokens only: priced at the configured $1 / $2 per million tokens.
    assert status["usage_by_role"]["worker"] == {"tokens": 2100, "cost_usd": round((2000 * 1 + 100 * 2) / 1e6, 6)}
    trace = stack.cli("trace", task["id"])
    assert trace.returncode == 0 and '"type": "turn.completed"' in trace.stdout and "\\n" not in trace.stdout


def aider_model(request: dict) -> ScriptedReply | None:
    """The model behind aider (no tools; its whole-file edit format): the file named in the task, in full."""
    if request.get("tools"):
        return None
    found = re.search(r"Your task: write (\S+): (.*)", prompt(request) + "\n".join(
        str(m.get("content")) for m in request["messages"]))
    path, content = found.groups()
    return ScriptedReply(content=f"Writing it.\n\n{path}\n```\n{content}\n```\n", prompt_tokens=800,
                         completion_tokens=40)


def test_aider_runs_items_in_parallel_and_leaves_no_artifacts(cadre, remote, store, aider_bin):
    base = single_item_plan("write a1.txt: by aider one", "write a2.txt: by aider two")
    with ScriptedModelServer(lambda r: aider_model(r) or base(r)) as server:
        stack = start_stack(cadre, server, workers=2, CADRE_WORKER_BACKEND="aider",
                            PATH=f"{aider_bin}:{os.environ['PATH']}", CADRE_WORKER_PRICE_PER_MTOK="[1, 2]")
        result, run_id, status = run_and_wait(stack, remote, "Two files by aider.", timeout=400)
        aider_calls = sum(not r.get("tools") for r in server.requests)
    assert result.returncode == 0 and status["status"] == "done", f"{result.stderr}\n{stack.logs()[-3000:]}"
    assert landed_files(remote, status) == {"a1.txt", "a2.txt"}, "no .aider* file is committed"
    assert git("show", "main:a1.txt", cwd=remote) == "by aider one"
    assert status["usage_by_role"]["worker"]["tokens"] == 840 * aider_calls and status["usage_unreported_calls"] == 0
    assert status["usage_by_role"]["worker"]["cost_usd"] > 0
    print(f"aider {AIDER_VERSION}: {aider_calls} model calls, usage {status['usage_by_role']['worker']}, "
          f"landed {sorted(landed_files(remote, status))}")
