"""A Redis master, a replica and three Sentinels on this machine, for failover tests (real redis-server
processes; a Sentinel is redis-server with `--sentinel`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from orchestrator.local.processes import RedisServer, free_port, redis_server_binary

MASTER_NAME = "cadre"


class SentinelCluster:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.master = RedisServer(workdir / "master")
        self.replica: RedisServer | None = None
        self.sentinels: list[tuple[int, subprocess.Popen]] = []

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port, _ in self.sentinels)

    def start(self) -> SentinelCluster:
        self.master.start()
        self.replica = RedisServer(self.workdir / "replica",
                                   extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]).start()
        wait_for(lambda: replication(self.replica.port).get("master_link_status") == "up", 30, "the replica syncs")
        binary, _bundled = redis_server_binary()
        for k in range(3):
            port = free_port()
            conf = self.workdir / f"sentinel-{k}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            process = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            self.sentinels.append((port, process))
        for port, _ in self.sentinels:
            wait_for(lambda p=port: self.master_port(p) == self.master.port, 20, "the Sentinels see the master")
        return self

    def master_port(self, sentinel_port: int | None = None) -> int | None:
        """The master's port as a Sentinel sees it (the first one by default)."""
        try:
            client = redis.Redis(port=sentinel_port or self.sentinels[0][0], decode_responses=True,
                                 socket_timeout=2)
            answer = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            return int(answer[1]) if answer else None
        except (redis.ConnectionError, redis.TimeoutError):
            return None

    def kill_master(self) -> None:
        os.kill(self.master.process.pid, signal.SIGKILL)
        self.master.process.wait()

    def stop(self) -> None:
        for _, process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()


def replication(port: int) -> dict:
    try:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=2).info("replication")
    except (redis.ConnectionError, redis.TimeoutError):
        return {}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s: {what}")
