"""The compose files and manifests are valid, and the stack they describe runs a whole run locally.

CI has no Docker engine: the services' own commands and environment are started as local processes
(the hosts `redis` and `demo-model` mapped to local ones). `scripts/compose-smoke` runs the real thing.
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
from orchestrator.local.sample_project import CHECK_COMMAND, GOAL, suite_passes
from orchestrator.queues.inspection import priority_lists
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CADRE_SERVICES = {"planner", "worker", "judge", "beat", "flower", "sample-repo"}
TEST_VALUES = {"REDIS_PASSWORD": "test-redis-password", "REDIS_ADMIN_PASSWORD": "test-redis-admin-password",
               "FLOWER_BASIC_AUTH": "admin:test-flower",
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


def dot_env(path: Path, **filled: str) -> dict[str, str]:
    """The KEY=VALUE lines of an env file (empty values dropped), with `filled` put in."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and value:
            values[key.strip()] = value
    return values | filled


def test_compose_files_and_manifests_are_valid():
    compose = load(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert CADRE_SERVICES | {"redis", "demo-model"} <= set(services)
    for name in CADRE_SERVICES | {"demo-model"}:
        service = services[name]
        assert service["image"] == "cadre:latest" and service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["pull_policy"] == "build", f"{name}: Cadre's image is built, never pulled"
        assert service["command"][0] in {"cadre", "celery", "python"}
        assert set(service.get("depends_on", {})) <= set(services)
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]
    assert services["worker"]["stop_grace_period"] == "2m"
    assert services["beat"]["deploy"]["replicas"] == 1
    redis_command = " ".join(services["redis"]["command"])
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction", "--requirepass"):
        assert flag in redis_command
    assert "ports" not in services["redis"], "Redis is not published on the host by default"
    assert "--user" in services["redis"]["command"] and "-flushall" in services["redis"]["command"]
    for name in ("planner", "worker", "judge"):
        assert {"seccomp=unconfined", "systempaths=unconfined"} <= set(services[name]["security_opt"]), name
        assert services[name]["environment"]["CADRE_REDIS_URL"].startswith("redis://cadre:")
    flower = services["flower"]["command"]
    assert any(arg.startswith("--basic-auth=") for arg in flower) and "--persistent=True" in flower
    assert any(arg.startswith("--purge_offline_workers=") for arg in flower)
    assert any(arg.startswith("--tasks_columns=") and "args" in arg for arg in flower)
    assert "--enable_events=False" in flower, "workers send events already: no broadcast every 5 s"
    for name in ("planner", "worker", "judge", "beat"):
        role = "beat" if name == "beat" else name
        assert services[name]["healthcheck"]["test"] == ["CMD", "cadre", "health", "--role", role]
    assert "test" in services["redis"]["healthcheck"] and "test" in services["flower"]["healthcheck"]
    monitoring = {name for name, service in services.items() if "monitoring" in service.get("profiles", [])}
    assert {"metrics", "prometheus", "grafana"} <= monitoring
    assert services["metrics"]["command"][:2] == ["cadre", "metrics"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"metrics:9464", "flower:5555"}
    for volume in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        assert source in compose["volumes"] or (ROOT / source).exists(), volume
    remote = load(ROOT / "deploy" / "compose.redis-remote.yml")["services"]["redis"]
    assert "--tls-port" in remote["command"] and remote["ports"][0].endswith(":6380")
    workers = load(ROOT / "deploy" / "compose.workers.yml")["services"]["worker"]
    assert workers["stop_grace_period"] == "2m" and workers["command"][:4] == ["cadre", "worker", "--role", "worker"]
    assert workers["environment"]["CADRE_REDIS_URL"].startswith("rediss://") and workers["pull_policy"] == "build"
    manifests = [doc for path in (ROOT / "deploy" / "k8s").glob("*.yaml") for doc in yaml.safe_load_all(path.read_text())]
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Deployment"}
    assert {"cadre-planner", "cadre-judge", "cadre-beat", "cadre-flower"} <= set(deployments)
    assert deployments["cadre-beat"]["spec"]["replicas"] == 1
    # Workers: a KEDA ScaledJob, one Job per queued task, each serving one item and exiting.
    [job] = [d for d in manifests if d["kind"] == "ScaledJob"]
    pod = job["spec"]["jobTargetRef"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 120 and pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"][-2:] == ["--max-tasks", "1"]
    assert [t["metadata"]["listName"] for t in job["spec"]["triggers"]] == priority_lists("work")
    assert job["spec"]["scalingStrategy"]["multipleScalersCalculation"] == "sum"
    assert any(d["kind"] == "Secret" for d in manifests)
    example = (ROOT / ".env.example").read_text()
    for name, field in CadreSettings.model_fields.items():
        variable = field.validation_alias if isinstance(field.validation_alias, str) else f"CADRE_{name.upper()}"
        assert f"{variable}=" in example, f"{variable} missing from .env.example"


def local_command(command: list[str], data_dir: Path) -> tuple[list[str], list[str]]:
    """(program, args) running a compose service's command here, with /data mapped to `data_dir`."""
    args = [arg.replace("/data", str(data_dir)) for arg in command]
    if args[0] == "cadre":
        return [sys.executable, "-m", "orchestrator.cli.main"], args[1:]
    if args[0] == "python":
        return [sys.executable], args[1:]
    return [sys.executable, "-m", args[0]], args[1:]


def test_the_compose_stack_runs_the_readme_goal_on_the_demo_model(tmp_path, redis_client):
    """`.env.example` with only passwords filled in: the roles fall back to the demo-model service."""
    compose = load(ROOT / "docker-compose.yml")
    services = interpolate(compose["services"], TEST_VALUES)
    redis_args = services["redis"]["command"]
    start = redis_args.index("--requirepass")
    redis_server = RedisServer(tmp_path / "redis", password=redis_args[start + 1], extra_args=redis_args[start + 2:]).start()
    data_dir = tmp_path / "data"
    model_port, flower_port = free_port(), free_port()
    example = dot_env(ROOT / ".env.example", REDIS_PASSWORD=TEST_VALUES["REDIS_PASSWORD"],
                      REDIS_ADMIN_PASSWORD=TEST_VALUES["REDIS_ADMIN_PASSWORD"],
                      FLOWER_BASIC_AUTH=TEST_VALUES["FLOWER_BASIC_AUTH"])
    base_env = {"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def env_of(service: dict) -> dict[str, str]:
        env = base_env | example
        for key, value in service.get("environment", {}).items():
            value = str(value).replace("@redis:6379", f"@127.0.0.1:{redis_server.port}")
            value = value.replace("http://demo-model:8000", f"http://127.0.0.1:{model_port}")
            env[key] = value.replace("/data", str(data_dir)) if key == "CADRE_DATA_DIR" else value
        return env

    started: list[CadreProcess] = []
    try:
        demo = [a.replace("8000", str(model_port)) for a in services["demo-model"]["command"]]
        program, args = local_command(demo, data_dir)
        started.append(CadreProcess(args, env_of(services["demo-model"]), tmp_path / "demo-model.log", program))
        sample = services["sample-repo"]
        program, args = local_command(sample["command"], data_dir)
        data_dir.mkdir(parents=True)
        subprocess.run(program + args, env=env_of(sample), check=True, capture_output=True, timeout=60)
        for name in ("planner", "worker", "judge", "beat", "flower"):
            command = [a.replace("--port=5555", f"--port={flower_port}") for a in services[name]["command"]]
            program, args = local_command(command, data_dir)
            started.append(CadreProcess(args, env_of(services[name]), tmp_path / f"{name}.log", program=program))
        env = env_of(services["planner"])
        run = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", "--repo", str(data_dir / "sample.git"),
                              "--goal", GOAL, "--check", CHECK_COMMAND, "--wait"],
                             env=env, capture_output=True, text=True, timeout=240)
        logs = "\n".join(p.log() for p in started)
        assert run.returncode == 0, f"{run.stderr}\n{logs[-4000:]}"
        assert suite_passes(data_dir / "sample.git")[0]
        for name in ("planner", "worker", "judge", "beat"):
            health = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "health", "--role", name],
                                    env=env, capture_output=True, text=True, timeout=60)
            assert health.returncode == 0, f"{name}: {health.stderr}"
        tasks = wait_until(lambda: flower_tasks(flower_port), 30, f"Flower did not answer\n{started[-1].log()}")
        work = [t for t in tasks.values() if t["name"] == "cadre.execute_work_item"]
        assert work and all("cycle 1" in t["args"] and "Fix mathlib/" in t["args"] for t in work), work
        assert all(p.process.poll() is None for p in started), "every service is still up"
    finally:
        for process in started:
            process.stop()
        redis_server.stop()


def flower_tasks(port: int) -> dict | None:
    """Flower's task list, asked with its password, once it also refuses a request without one (401)."""
    import base64
    import json

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5)
        raise AssertionError("Flower answered without a password")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    except OSError:
        time.sleep(0.5)
        return None
    token = base64.b64encode(TEST_VALUES["FLOWER_BASIC_AUTH"].encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/tasks", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read()) or None
