"""One work item through the real image: pytest-celery's Docker setup (`CeleryTestSetup`) with a Redis broker
container and a Cadre worker container built from `deploy/Dockerfile`, plus the demo model in a container of
the same image. Skips, saying so, when no Docker engine answers (`../shared/tools/local-docker up` starts one)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest
from pytest_celery import (
    CeleryBackendCluster,
    CeleryBrokerCluster,
    CeleryTestSetup,
    CeleryWorkerContainer,
    RedisContainer,
)
from pytest_docker_tools import build, container, fxtr

from orchestrator.state.keys import Keys
from orchestrator.state.models import Cycle, ItemStatus, NodeStatus, PlannerNode, Run, WorkItem
from orchestrator.state.records import connect
from orchestrator.state.store import Store
from tests.conftest import wait_until
from tests.services import git, make_remote

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def docker_client():
    """pytest-docker-tools' client, or a clear skip where no Docker engine answers."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker raises several kinds of errors for "no engine"
        pytest.skip(f"no Docker engine answers ({type(exc).__name__}); start one: ../shared/tools/local-docker up")
    return client


@pytest.fixture
def default_redis_broker_image() -> str:
    return "redis:7-alpine"


@pytest.fixture
def default_redis_backend_image() -> str:
    return "redis:7-alpine"


class HostReachableRedis(RedisContainer):
    """pytest-celery's Redis, addressed the way this host reaches it (also when pytest runs in a container)."""

    @property
    def host_url(self) -> str:
        host, port = self.get_addr("6379/tcp")
        return f"redis://{host}:{port}/{self.vhost}"


default_redis_broker = container(image="{default_redis_broker_image}", ports=fxtr("default_redis_broker_ports"),
                                 environment=fxtr("default_redis_broker_env"),
                                 network="{default_pytest_celery_network.name}", wrapper_class=HostReachableRedis,
                                 timeout=60, command=fxtr("default_redis_broker_command"))
default_redis_backend = container(image="{default_redis_backend_image}", ports=fxtr("default_redis_backend_ports"),
                                  environment=fxtr("default_redis_backend_env"),
                                  network="{default_pytest_celery_network.name}", wrapper_class=HostReachableRedis,
                                  timeout=60, command=fxtr("default_redis_backend_command"))


@pytest.fixture
def celery_broker_cluster(celery_redis_broker):
    cluster = CeleryBrokerCluster(celery_redis_broker)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster(celery_redis_backend):
    cluster = CeleryBackendCluster(celery_redis_backend)
    yield cluster
    cluster.teardown()


class CadreWorkerContainer(CeleryWorkerContainer):
    """Cadre's own image running `cadre worker --role worker` (it prints Celery's `ready.` when it serves)."""

    @classmethod
    def version(cls) -> str:
        return "cadre"

    @classmethod
    def log_level(cls) -> str:
        return "INFO"

    @classmethod
    def worker_name(cls) -> str:
        return "worker"

    @classmethod
    def worker_queue(cls) -> str:
        return "work"

    @classmethod
    def command(cls, *args: str) -> list[str]:
        return ["cadre", "worker", "--role", "worker", "--concurrency", "1", "--loglevel", cls.log_level(), *args]


@pytest.fixture
def default_worker_container_cls():
    return CadreWorkerContainer


@pytest.fixture(scope="session")
def default_worker_container_session_cls():
    return CadreWorkerContainer


cadre_image = build(path=str(ROOT), dockerfile="deploy/Dockerfile", tag="cadre:pytest-celery")
demo_model = container(image="{cadre_image.id}", network="{default_pytest_celery_network.name}",
                       command=["python", "-m", "orchestrator.testing.scripted_model", "--policy",
                                "orchestrator.local.demo_model:policy", "--host", "0.0.0.0", "--port", "8000"])


@pytest.fixture
def shared_repos(tmp_path) -> Path:
    """A folder of bare repositories, mounted into the worker container at /repos and owned by the container's
    user (uid 1000, as `deploy/Dockerfile` makes it): git refuses a repository its user does not own."""
    folder = tmp_path / "repos"
    make_remote(folder, {"README.md": "# in the image\n"})
    subprocess.run(["chown", "-R", "1000:1000", str(folder)], check=True)
    return folder


@pytest.fixture
def cadre_worker_env(default_worker_env, demo_model) -> dict:
    return {**default_worker_env, "CADRE_REDIS_URL": default_worker_env["CELERY_BROKER_URL"],
            # Docker's network alias of a container is its short id (as pytest-celery addresses Redis).
            "CADRE_DEMO_MODEL_URL": f"http://{demo_model.id[:12]}:8000/v1", "CADRE_DATA_DIR": "/tmp/cadre-data"}


default_worker_container = container(
    image="{cadre_image.id}", environment=fxtr("cadre_worker_env"), network="{default_pytest_celery_network.name}",
    wrapper_class=CadreWorkerContainer, timeout=120, command=CadreWorkerContainer.command(),
    volumes={"{shared_repos}": {"bind": "/repos", "mode": "rw"}},
    # The agent sandbox (bubblewrap) needs namespaces and an unmasked /proc; compose lifts exactly that with
    # security_opt systempaths=unconfined, which the Docker API (unlike its CLI) does not take: privileged here.
    privileged=True)


@pytest.fixture
def celery_setup_cls():
    return CeleryTestSetup


def test_one_work_item_through_the_real_image(celery_setup, shared_repos):
    store = Store(connect(celery_setup.broker.config()["host_url"]))
    run = Run(id="run-image", repo="/repos/remote.git", branch="main", goal="from the image", max_cycles=1)
    node = PlannerNode(id="node-image", run_id=run.id, cycle=1, status=NodeStatus.WAITING)
    store.runs.create(run, Cycle(run_id=run.id, number=1, root_node_id=node.id), node)
    item = WorkItem(id="item-image", run_id=run.id, cycle=1, node_id=node.id, title="Fix image.txt",
                    instructions="Write it.\nContent of image.txt:\nwritten in the image\n")
    store.redis.set(Keys.item(item.id), item.model_dump_json())
    store.redis.rpush(Keys.run_items(run.id), item.id)
    celery_setup.app.send_task("cadre.execute_work_item", args=[item.id], queue="work")
    wait_until(lambda: store.items.get(item.id).status in {ItemStatus.DONE, ItemStatus.FAILED}, 180,
               f"the item did not settle\n{celery_setup.worker.logs()[-3000:]}")
    settled = store.items.get(item.id)
    assert settled.status is ItemStatus.DONE and settled.handoff.commit, settled.handoff
    assert git("-c", f"safe.directory={shared_repos / 'remote.git'}", "show", "main:image.txt",
               cwd=shared_repos / "remote.git") == "written in the image"  # (the repository is uid 1000's)
    assert settled.attempts[0].celery_hostname.startswith("worker@"), "run by the container's Cadre worker"
    celery_setup.worker.assert_log_exists("cadre.execute_work_item")

