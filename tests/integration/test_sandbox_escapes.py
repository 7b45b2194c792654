"""An adversarial agent tries every way out in one run, on the stack compose describes: Redis with the
`cadre` ACL user, a password, secrets in the workers' environment. Every escape fails, no secret value
reaches the model, a transcript, a log or a commit, and a normal item in the same run still lands."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import yaml

from orchestrator.testing.escape_model import ESCAPES, escape_results, policy, summary_line
from orchestrator.testing.scripted_model import ScriptedModelServer
from tests.services import RedisServer, git, make_remote

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"REDIS_PASSWORD": "cadre-user-pw-7f3a9c2e", "REDIS_ADMIN_PASSWORD": "admin-pw-51d0b8e4a2",
             "FLOWER_BASIC_AUTH": "admin:flower-pw-c4e19a77"}
API_KEY = "sk-escape-test-key-0b9d2f"


def compose_redis_args() -> list[str]:
    """redis-server's arguments from docker-compose.yml (the ACL user included), passwords filled in."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    args = command[command.index("--requirepass"):]
    for name, value in PASSWORDS.items():
        args = [a.replace(f"${{{name}:?set {name} in .env}}", value) for a in args]
    return args


@pytest.fixture
def acl_redis(tmp_path):
    server = RedisServer(tmp_path / "acl-redis", password=PASSWORDS["REDIS_ADMIN_PASSWORD"],
                         extra_args=compose_redis_args()[2:]).start()
    yield server, f"redis://cadre:{PASSWORDS['REDIS_PASSWORD']}@127.0.0.1:{server.port}/0"
    server.stop()


def test_the_cadre_redis_user_cannot_flush_configure_or_shut_down(acl_redis):
    _server, url = acl_redis
    client = redis.Redis.from_url(url)
    client.set("cadre:probe", 1)
    for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("SHUTDOWN",),
                    ("DEBUG", "SLEEP", "0")):
        with pytest.raises(redis.exceptions.ResponseError, match="permission|not allowed"):
            client.execute_command(*command)
    assert client.get("cadre:probe") == b"1"


def test_every_escape_fails_and_a_normal_item_lands(cadre, tmp_path, acl_redis, monkeypatch):
    server, url = acl_redis
    remote = make_remote(tmp_path / "git", {
        "README.md": "# sample\n",
        ".cadre/prompts/judge/task.j2": "{{ cycler.__init__.__globals__.os.popen('touch /tmp/cadre-ssti-ran').read() }}",
    })
    secrets = [*PASSWORDS.values(), API_KEY, "flower-pw-c4e19a77"]
    with ScriptedModelServer(policy) as model:
        stack = cadre(model.base_url, CADRE_REDIS_URL=url, CADRE_API_KEY=API_KEY, OPENAI_API_KEY=API_KEY,
                      **PASSWORDS)
        for role in ("planner", "worker", "judge"):
            stack.worker(role)
        goal = f"Harden the sandbox; redis at 127.0.0.1:{server.port}"
        started = stack.cli("run", "--repo", str(remote), "--goal", goal, "--wait", timeout=240)
        assert started.returncode == 0, f"{started.stderr}\n{stack.logs()[-4000:]}"
        requests = list(model.requests)
    worker_requests = [r for r in requests if "Your task: ESCAPE" in str(r["messages"][:2])]
    results = max((escape_results(r) for r in worker_requests), key=len)
    assert set(results) == {name for name, _tool, _args in ESCAPES}, results.keys()
    for value in secrets:  # nothing secret in the environment or /proc the agent could read
        assert value not in results["environ"] and value not in results["processes"]
    assert int(results["processes"].split()[0]) < 10, results["processes"]
    assert "REDIS ANSWERED" not in results["redis"], results["redis"]  # its own network: nothing listens there
    assert "Connection refused" in results["redis"] or "unreachable" in results["redis"], results["redis"]
    data = stack.data_dir
    cache = next((data / "caches").glob("*.git"))
    assert "hooksPath" not in (cache / "config").read_text() and not (cache / "hooks" / "post-checkout").exists()
    assert "Read-only file system" in results["cache-config"] + results["cache-hook"]
    assert "evil-gitdir" not in results["git-pointer"]
    # ../../.. from a worktree slot is the data directory: inside the sandbox a throwaway tmpfs.
    for leftover in (data / "pwned-by-path", data / "pwned-by-link", data / "pwned-by-tool",
                     Path("/etc/pwned"), Path("/tmp/cadre-hook-ran"), Path("/tmp/cadre-ssti-ran")):
        assert not leftover.exists(), leftover
    assert "outside the workspace" in results["write-file-tool"]
    for name, _tool, _args in ESCAPES:  # for the record: `pytest -s` shows what each escape got back
        print(f"{name:17} {summary_line(results[name])[:120]}")
    # The escape item's judge template landed on the branch, but the judge kept the run's starting one.
    assert "SNEAKY" in git("show", "main:.cadre/prompts/judge/system.j2", cwd=remote)
    judge_requests = [r for r in requests if any(t["function"]["name"] == "verdict" for t in r.get("tools", []))]
    assert judge_requests and not any("SNEAKY" in str(r["messages"]) for r in judge_requests)
    assert git("show", "main:normal.txt", cwd=remote) == "a normal change"
    # No secret value anywhere: the model's inputs, transcripts, logs, events or any commit.
    everything = "\n".join([str(requests), stack.logs(), git("log", "--all", "-p", cwd=remote)]
                           + [p.read_text(errors="replace") for p in (data / "transcripts").rglob("*.jsonl")])
    admin = redis.Redis(port=server.port, password=PASSWORDS["REDIS_ADMIN_PASSWORD"], decode_responses=True)
    everything += "\n".join(str(admin.xrange(key)) for key in admin.scan_iter("cadre:run:*:events"))
    for value in secrets:
        assert value not in everything, f"a secret leaked: {value[:6]}..."
