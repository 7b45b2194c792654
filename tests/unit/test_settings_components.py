"""The typed views of CadreSettings: each reads its `CADRE_*` variables, sub-planners fall back to the planner,
the tasks' time limits come from the settings the Celery app is made with, and `.env.example` lists exactly
the variables the settings read."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import ssl
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource

from orchestrator.config.settings import DEMO_MODEL, ROLES, CadreSettings, MissingModelError
from orchestrator.queues.app import make_celery, task_time_limits
from orchestrator.queues.names import CHECK_BRANCH, EXECUTE_WORK_ITEM, JUDGE_CYCLE, PLAN_NODE, SWEEP_PENDING_REFS, TICK
from orchestrator.queues.thread_limits import limits_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path) -> None:
    """No `CADRE_*` variable of the test process leaks in; the data dir (where `cadre up` leaves a Redis
    URL) is an empty one."""
    for name in list(os.environ):
        if name.upper().startswith("CADRE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "data"))


def settings_from(monkeypatch, **variables: str) -> CadreSettings:
    """Settings read from these environment variables (and no `.env`)."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return CadreSettings(_env_file=None)


@pytest.mark.parametrize("role", ["planner", "worker", "judge"])
def test_a_role_reads_its_own_variables(monkeypatch, role: str) -> None:
    prefix = f"CADRE_{role.upper()}_"
    settings = settings_from(monkeypatch, **{
        f"{prefix}MODEL": f"openai/{role}", f"{prefix}API_BASE": f"http://{role}.example/v1",
        f"{prefix}MODEL_PARAMS": '{"temperature": 0}', f"{prefix}FALLBACKS": '["openai/spare"]',
        f"{prefix}PRICE_PER_MTOK": "[1.5, 6]", f"{prefix}MAX_STEPS": "7", f"{prefix}TIME_LIMIT_SECONDS": "100"})
    view = settings.role(role)
    assert view.name == role
    assert view.model == f"openai/{role}" and view.api_base == f"http://{role}.example/v1"
    assert view.model_params == {"temperature": 0} and view.fallbacks == ["openai/spare"]
    assert view.price_per_mtok == (1.5, 6.0)
    assert view.max_steps == 7 and view.time_limit_seconds == 100 and view.soft_time_limit_seconds == 70
    assert not view.uses_demo_model
    assert settings.model_for(role) == f"openai/{role}" and settings.api_base_for(role) == f"http://{role}.example/v1"
    for other in (r for r in ("planner", "worker", "judge") if r != role):
        assert settings.role(other).model is None and settings.role(other).time_limit_seconds != 100


def test_a_subplanner_falls_back_to_the_planner(monkeypatch) -> None:
    settings = settings_from(monkeypatch, CADRE_PLANNER_MODEL="openai/planner", CADRE_PLANNER_API_BASE="http://p/v1",
                             CADRE_PLANNER_MODEL_PARAMS='{"top_p": 0.5}', CADRE_PLANNER_FALLBACKS='["openai/spare"]',
                             CADRE_PLANNER_PRICE_PER_MTOK="[1, 2]", CADRE_PLANNER_MAX_STEPS="9",
                             CADRE_PLANNER_TIME_LIMIT_SECONDS="600", CADRE_SUBPLANNER_MODEL_PARAMS="{}")
    sub = settings.role("subplanner")
    assert (sub.name, sub.model, sub.api_base, sub.model_params, sub.fallbacks, sub.price_per_mtok) == \
        ("subplanner", "openai/planner", "http://p/v1", {"top_p": 0.5}, ["openai/spare"], (1.0, 2.0))
    assert (sub.max_steps, sub.time_limit_seconds, sub.soft_time_limit_seconds) == (9, 600, 570)

    own = settings_from(monkeypatch, CADRE_SUBPLANNER_MODEL="openai/small", CADRE_SUBPLANNER_API_BASE="http://s/v1",
                        CADRE_SUBPLANNER_FALLBACKS='["openai/tiny"]').role("subplanner")
    assert (own.model, own.api_base, own.fallbacks, own.model_params) == \
        ("openai/small", "http://s/v1", ["openai/tiny"], {"top_p": 0.5})


def test_roles_without_a_model_use_the_demo_model_when_it_is_set(monkeypatch) -> None:
    with pytest.raises(MissingModelError, match="CADRE_WORKER_MODEL"):
        settings_from(monkeypatch).model_for("worker")
    settings = settings_from(monkeypatch, CADRE_DEMO_MODEL_URL="http://demo/v1", CADRE_JUDGE_MODEL="openai/judge")
    assert settings.role("worker").uses_demo_model and settings.uses_demo_model("worker")
    assert settings.role("worker").model is None
    assert (settings.model_for("worker"), settings.api_base_for("worker")) == (DEMO_MODEL, "http://demo/v1")
    assert not settings.role("judge").uses_demo_model and settings.model_for("judge") == "openai/judge"
    assert settings.api_base_for("judge") is None


def test_an_unknown_role_is_refused(monkeypatch) -> None:
    settings = settings_from(monkeypatch)
    for ask in (settings.role, settings.model_for, settings.api_base_for, settings.uses_demo_model):
        with pytest.raises(ValueError, match="unknown role 'reviewer'"):
            ask("reviewer")
    assert [settings.role(role).name for role in ROLES] == list(ROLES)


def test_the_soft_limit_is_30_seconds_early_and_never_below_10(monkeypatch) -> None:
    settings = settings_from(monkeypatch, CADRE_JUDGE_TIME_LIMIT_SECONDS="30")
    assert settings.role("judge").soft_time_limit_seconds == 10
    assert settings.role("worker").soft_time_limit_seconds == settings.worker_time_limit_seconds - 30


def test_views_are_frozen_copies(monkeypatch) -> None:
    settings = settings_from(monkeypatch, CADRE_WORKER_FALLBACKS='["openai/spare"]')
    view = settings.role("worker")
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.max_steps = 1
    view.fallbacks.append("openai/other")
    assert settings.worker_fallbacks == ["openai/spare"]


def test_redis_reads_its_url_and_tls_files(monkeypatch) -> None:
    assert settings_from(monkeypatch, CADRE_REDIS_URL="redis://r:6379/2").redis.ssl_options() == {}
    redis = settings_from(monkeypatch, CADRE_REDIS_URL="rediss://r:6380/0", CADRE_REDIS_TLS_CA_FILE="/tls/ca.pem",
                          CADRE_REDIS_TLS_CERT_FILE="/tls/client.pem", CADRE_REDIS_TLS_KEY_FILE="/tls/client.key").redis
    assert redis.url == "rediss://r:6380/0" and redis.tls_ca_file == Path("/tls/ca.pem")
    assert redis.ssl_options() == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/tls/ca.pem",
                                   "ssl_certfile": "/tls/client.pem", "ssl_keyfile": "/tls/client.key"}


def test_the_sandbox_reads_its_variables(monkeypatch) -> None:
    assert settings_from(monkeypatch).sandbox.mode == "bwrap"
    sandbox = settings_from(monkeypatch, CADRE_SANDBOX="off", CADRE_SANDBOX_NETWORK="true",
                            CADRE_SANDBOX_ENV='["GOPATH"]', CADRE_SANDBOX_READABLE='["/opt/tools"]',
                            CADRE_SANDBOX_HIDDEN='["/srv/secret"]', CADRE_SANDBOX_MAX_PROCESSES="64",
                            CADRE_SANDBOX_MAX_MEMORY_MB="512", CADRE_SANDBOX_MAX_FILE_MB="8",
                            CADRE_SANDBOX_MAX_TMP_MB="32", CADRE_AGENT_ALLOWED_HOSTS='["pypi.org"]').sandbox
    assert sandbox.mode == "off" and sandbox.network and sandbox.env == ["GOPATH"]
    assert sandbox.readable == [Path("/opt/tools")] and sandbox.hidden == [Path("/srv/secret")]
    assert (sandbox.max_processes, sandbox.max_memory_mb, sandbox.max_file_mb, sandbox.max_tmp_mb) == (64, 512, 8, 32)
    assert sandbox.agent_allowed_hosts == ["pypi.org"]


def test_cadre_sandbox_is_read_from_dotenv_and_given_as_a_keyword(monkeypatch, tmp_path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("CADRE_SANDBOX=off\n")
    assert CadreSettings(_env_file=dotenv).sandbox.mode == "off"
    monkeypatch.setenv("CADRE_SANDBOX", "bwrap")  # the environment wins over .env
    assert CadreSettings(_env_file=dotenv).sandbox.mode == "bwrap"
    # A keyword wins over both, by field name or by the variable's name, like every other setting's.
    assert CadreSettings(_env_file=dotenv, sandbox_mode="off").sandbox.mode == "off"
    assert CadreSettings(_env_file=dotenv, sandbox="off").sandbox.mode == "off"
    monkeypatch.setenv("CADRE_SANDBOX_MODE", "off")  # the field's name is no variable of its own
    assert CadreSettings(_env_file=None).sandbox.mode == "bwrap"
    with pytest.raises(ValidationError, match="CADRE_SANDBOX"):
        CadreSettings(_env_file=None, sandbox="docker")


def test_landing_planning_and_budgets_read_their_variables(monkeypatch) -> None:
    settings = settings_from(monkeypatch, CADRE_INTEGRATION="direct", CADRE_LAND_PUSH_INTERVAL_SECONDS="2.5",
                             CADRE_PUSH_ATTEMPTS="3", CADRE_MAX_COMMIT_MB="1.5", CADRE_MAX_TASKS_PER_CYCLE="5",
                             CADRE_MAX_DEPTH="1", CADRE_MAX_SUBPLANNERS_PER_NODE="2", CADRE_MAX_NODES_PER_CYCLE="4",
                             CADRE_MAX_ROUNDS_PER_NODE="2", CADRE_MAX_COST_USD="12.5", CADRE_MAX_TOKENS="1000",
                             CADRE_MAX_HOURS="0.5", CADRE_BUDGET_WARNING_FRACTION="0.5", CADRE_ITEM_MAX_COST_USD="1")
    landing, planning, budgets = settings.landing, settings.planning, settings.budgets
    assert (landing.strategy, landing.push_interval_seconds, landing.push_attempts, landing.max_commit_bytes) == \
        ("direct", 2.5, 3, 1_500_000)
    assert (planning.max_tasks_per_cycle, planning.max_depth, planning.max_subplanners_per_node,
            planning.max_nodes_per_cycle, planning.max_rounds_per_node) == (5, 1, 2, 4, 2)
    assert (budgets.max_cost_usd, budgets.max_tokens, budgets.max_hours, budgets.warning_fraction,
            budgets.item_max_cost_usd) == (12.5, 1000, 0.5, 0.5, 1.0)
    assert settings_from(monkeypatch, CADRE_INTEGRATION="queue").landing.strategy == "queue"


def does_nothing() -> None:
    """The body of a task defined only to see the limits the app gives it."""


def test_tasks_get_their_time_limits_from_the_app_settings(monkeypatch) -> None:
    settings = settings_from(monkeypatch, CADRE_WORKER_TIME_LIMIT_SECONDS="100", CADRE_PLANNER_TIME_LIMIT_SECONDS="200",
                             CADRE_JUDGE_TIME_LIMIT_SECONDS="300", CADRE_TICK_SECONDS="90",
                             CADRE_CHECK_TIMEOUT_SECONDS="50")
    app = make_celery(settings)
    # Finalizing the app brings in the tasks of role modules this process imported already; define the others
    # as a role's task module does, with no limits of their own.
    registered, names = app.tasks, (PLAN_NODE, EXECUTE_WORK_ITEM, JUDGE_CYCLE, TICK, CHECK_BRANCH, SWEEP_PENDING_REFS)
    for name in names:
        if name not in registered:
            app.task(name=name, shared=False)(does_nothing)
    limits = {name: (app.tasks[name].time_limit, app.tasks[name].soft_time_limit) for name in names}
    assert limits == {PLAN_NODE: (200, 170), EXECUTE_WORK_ITEM: (100, 70), JUDGE_CYCLE: (300, 270),
                      TICK: (120, 90), CHECK_BRANCH: (170, 140), SWEEP_PENDING_REFS: (600, 570)}
    # The threads pool's own timers read the same limits (a message sent by name carries none).
    assert limits_of(app.tasks[EXECUTE_WORK_ITEM]) == (70, 100)
    assert task_time_limits(settings_from(monkeypatch, CADRE_TICK_SECONDS="5"))[TICK] == \
        {"time_limit": 90, "soft_time_limit": 60}


def test_the_role_task_modules_take_the_app_limits() -> None:
    from orchestrator.config.settings import get_settings
    from orchestrator.queues.app import app

    import_task_modules()
    expected = task_time_limits(get_settings())
    for name, limits in expected.items():
        assert (app.tasks[name].time_limit, app.tasks[name].soft_time_limit) == \
            (limits["time_limit"], limits["soft_time_limit"]), name


def import_task_modules() -> None:
    import judge.tasks  # noqa: F401
    import planners.tasks  # noqa: F401
    import workers.tasks  # noqa: F401


def env_example_script():
    """scripts/write-env-example as a module (it writes nothing when imported)."""
    path = ROOT / "scripts" / "write-env-example"
    loader = SourceFileLoader("write_env_example", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_env_example_lists_exactly_the_variables_the_settings_read() -> None:
    script = env_example_script()
    example = (ROOT / ".env.example").read_text()
    assert example == script.render(), ".env.example is stale: run scripts/write-env-example"
    listed = re.findall(r"^(?:# )?(CADRE_[A-Z0-9_]+)=", example.removeprefix(script.HEADER), flags=re.MULTILINE)
    source = EnvSettingsSource(CadreSettings, case_sensitive=False, env_prefix="CADRE_")
    read = [env_name.upper() for name, field in CadreSettings.model_fields.items()
            for _key, env_name, _complex in source._extract_field_info(field, name)]
    assert listed == read
    assert "CADRE_SANDBOX" in listed and "CADRE_SANDBOX_MODE" not in listed
