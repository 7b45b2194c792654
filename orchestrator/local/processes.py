"""Local processes of a Cadre stack on one machine: a private redis-server and `cadre` subprocesses.

Used by `cadre up`, the tests and the benchmark scripts; nothing here needs Docker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

REDIS_HINT = "redis-server is not installed: install it (apt-get install redis-server, brew install redis) or " \
             "set CADRE_TEST_REDIS_URL to a Redis the tests may flush"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server (AOF on, `noeviction`) on a free or given port, its data in `workdir`.

    With `tls_dir` (holding ca.crt, redis.crt and redis.key, as `scripts/make-redis-certs` writes
    them) it speaks TLS only, and `url` is a `rediss://` URL.
    """

    def __init__(self, workdir: Path, appendonly: bool = True, port: int | None = None, password: str | None = None,
                 tls_dir: Path | None = None, extra_args: list[str] | None = None, host: str = "127.0.0.1"):
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.tls_dir = tls_dir
        self.extra_args = extra_args or []
        self.host = host
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls_dir else 'redis'}://{auth}{self.host}:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if self.tls_dir is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls_dir / "redis.crt"),
                "--tls-key-file", str(self.tls_dir / "redis.key"), "--tls-ca-cert-file", str(self.tls_dir / "ca.crt"),
                "--tls-auth-clients", "optional"]

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(REDIS_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, *self._listen_args(), "--bind", self.host, "--dir", str(self.workdir),
             "--appendonly", "yes" if self.appendonly else "no", "--save", "", "--maxmemory-policy", "noeviction",
             *(["--requirepass", self.password] if self.password else []), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
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

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, program: list[str] | None = None):
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        command = (program or [sys.executable, "-m", "orchestrator.cli.main"]) + args
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

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
