"""The compose files and manifests are valid, and the stack they describe runs a whole run locally.

There is no Docker engine here: the services' own commands and environment are started as local
processes (the hosts `redis` and the central Redis mapped to a private redis-server).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestrator.config.settings import CadreSettings
from orchestrator.local.processes import CadreProcess, RedisServer, free_port
from orchestrator.local.sample_project import GOAL, suite_passes
from orchestrator.local.scripted_model import ScriptedModelServer
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CADRE_SERVICES = {"planner", "worker", "judge", "beat", "flower", "sample-repo"}
TEST_VALUES = {"REDIS_PASSWORD": "test-redis-password", "FLOWER_BASIC_AUTH": "admin:test-flower",
               "CADRE_AGENTS": "", "CADRE_REDIS_HOST": "central-redis"}


def interpolate(value, variables: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} substitution (and $$ escapes)."""
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in variables and variables[name] != "":
            return variables[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value.replace("$$", "\0")).replace("\0", "$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_compose_files_and_manifests_are_valid():
    compose = load(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert CADRE_SERVICES | {"redis"} <= set(services)
    for name in CADRE_SERVICES:
        service = services[name]
        assert service["image"] == "cadre:latest" and service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["command"][0] in {"cadre", "celery"}
        assert set(service.get("depends_on", {})) <= set(services)
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]
    assert services["worker"]["stop_grace_period"] == "2m"
    assert services["beat"]["deploy"]["replicas"] == 1
    redis_command = " ".join(services["redis"]["command"])
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction", "--requirepass"):
        assert flag in redis_command
    assert any(arg.startswith("--basic-auth=") for arg in services["flower"]["command"])
    assert "--persistent=True" in services["flower"]["command"]
    for name in ("redis", "planner", "worker", "judge", "flower"):
        assert "test" in services[name]["healthcheck"]
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    workers = load(ROOT / "deploy" / "compose.workers.yml")["services"]["worker"]
    assert workers["stop_grace_period"] == "2m" and workers["command"][:4] == ["cadre", "worker", "--role", "worker"]
    manifests = [doc for path in (ROOT / "deploy" / "k8s").glob("*.yaml") for doc in yaml.safe_load_all(path.read_text())]
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Deployment"}
    assert {"cadre-planner", "cadre-worker", "cadre-judge", "cadre-beat", "cadre-flower"} <= set(deployments)
    assert deployments["cadre-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 120
    assert deployments["cadre-beat"]["spec"]["replicas"] == 1
    scaled = next(d for d in manifests if d["kind"] == "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "cadre-worker"
    assert scaled["spec"]["triggers"][0]["metadata"]["listName"] == "work"
    assert any(d["kind"] == "Secret" for d in manifests)
    example = (ROOT / ".env.example").read_text()
    for field in CadreSettings.model_fields:
        assert f"CADRE_{field.upper()}=" in example, f"{field} missing from .env.example"


def local_command(command: list[str], data_dir: Path) -> tuple[list[str], list[str]]:
    """(program, args) running a compose service's command here, with /data mapped to `data_dir`."""
    args = [arg.replace("/data", str(data_dir)) for arg in command]
    if args[0] == "cadre":
        return [sys.executable, "-m", "orchestrator.cli.main"], args[1:]
    return [sys.executable, "-m", args[0]], args[1:]


def test_the_compose_stack_runs_a_whole_run_locally(tmp_path, redis_client):
    compose = load(ROOT / "docker-compose.yml")
    services = interpolate(compose["services"], TEST_VALUES)
    redis_args = services["redis"]["command"]
    password = redis_args[redis_args.index("--requirepass") + 1]
    redis_server = RedisServer(tmp_path / "redis", password=password).start()
    data_dir = tmp_path / "data"
    started: list[CadreProcess] = []
    from orchestrator.local.demo_model import policy

    with ScriptedModelServer(policy) as model:
        dot_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"],
                   "HOME": os.environ.get("HOME", str(tmp_path)), "CADRE_API_KEY": "sk-from-dot-env-000"}
        for role in ("PLANNER", "WORKER", "JUDGE"):
            dot_env[f"CADRE_{role}_MODEL"] = "openai/cadre-demo-model"
            dot_env[f"CADRE_{role}_API_BASE"] = model.base_url

        def env_of(service: dict) -> dict[str, str]:
            env = dict(dot_env)
            for key, value in service.get("environment", {}).items():
                value = str(value).replace("@redis:6379", f"@127.0.0.1:{redis_server.port}")
                value = value.replace("@central-redis:6379", f"@127.0.0.1:{redis_server.port}")
                env[key] = value.replace("/data", str(data_dir)) if key == "CADRE_DATA_DIR" else value
            return env

        try:
            sample = services["sample-repo"]
            program, args = local_command(sample["command"], data_dir)
            data_dir.mkdir(parents=True)
            subprocess.run(program + args, env=env_of(sample), check=True, capture_output=True, timeout=60)
            flower_port = free_port()
            for name in ("planner", "worker", "judge", "beat", "flower"):
                command = [a.replace("--port=5555", f"--port={flower_port}") for a in services[name]["command"]]
                program, args = local_command(command, data_dir)
                started.append(CadreProcess(args, env_of(services[name]), tmp_path / f"{name}.log", program=program))
            extra = interpolate(load(ROOT / "deploy" / "compose.workers.yml")["services"]["worker"], TEST_VALUES)
            program, args = local_command(extra["command"], data_dir / "extra")
            started.append(CadreProcess(args, env_of(extra), tmp_path / "extra-worker.log", program=program))
            env = env_of(services["planner"])
            run = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(data_dir / "sample.git"),
                                  "--goal", GOAL, "--wait"], env=env, capture_output=True, text=True, timeout=240)
            logs = "\n".join(p.log() for p in started)
            assert run.returncode == 0, f"{run.stderr}\n{logs[-4000:]}"
            assert suite_passes(data_dir / "sample.git")[0]
            assert wait_until(lambda: flower_answers(flower_port), 30, f"Flower did not answer\n{started[4].log()}")
            assert all(p.process.poll() is None for p in started), "every service is still up"
        finally:
            for process in started:
                process.stop()
            redis_server.stop()


def flower_answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # basic auth is on
    except OSError:
        time.sleep(0.5)
        return False
    return False
