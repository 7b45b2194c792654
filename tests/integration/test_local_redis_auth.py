"""`cadre up` and `cadre demo` never start an open Redis.

The redis-server `cadre up` starts refuses anyone without a password, lets its `cadre` ACL user (the
URL it leaves in `<data dir>/redis.url`, mode 0600) use `cadre:` keys but not flush, reconfigure or
shut it down, keeps every password off command lines and out of its own output, and another shell's
`cadre run` / `cadre status` with no CADRE_REDIS_URL reach it through that file.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import redis

from orchestrator.config.settings import REDIS_URL_FILE
from orchestrator.local.processes import RedisServer
from tests.conftest import cadre_env, wait_until
from tests.integration.test_local_stack import alive, descendants, start_up
from tests.services import free_port

pytestmark = pytest.mark.integration


def unauthenticated_reply(port: int) -> bytes:
    """What Redis answers a client that sends PING without authenticating (as any local process could)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(200)


def assert_cadre_user_is_limited(url: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    client.set("cadre:auth-probe", "ok")
    assert client.get("cadre:auth-probe") == "ok"
    for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "requirepass"), ("ACL", "LIST"), ("SHUTDOWN",)):
        with pytest.raises(redis.exceptions.NoPermissionError, match="permission"):
            client.execute_command(*command)
    assert client.get("cadre:auth-probe") == "ok"
    client.close()


def command_lines(pids: set[int]) -> str:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(lines)


def loopback_only(port: int) -> bool:
    """Whether every socket listening on `port` (IPv4 and IPv6) is bound to a loopback address."""
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                listening.append(address)
    return bool(listening) and all(a in ("0100007F", "00000000000000000000000001000000") for a in listening)


def other_shell_env(data_dir: Path) -> dict[str, str]:
    """A Cadre environment with the data dir and no CADRE_REDIS_URL (run it outside the checkout: no .env)."""
    env = cadre_env("unused", data_dir, None, CADRE_DEMO_MODEL_URL="http://127.0.0.1:9/v1")
    del env["CADRE_REDIS_URL"]
    return env


def stop(process: subprocess.Popen, stack: set[int]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0
    wait_until(lambda: not alive(stack), 15, f"left running: {alive(stack)}")


def test_cadre_up_starts_a_password_protected_redis_that_other_shells_find(tmp_path, remote):
    process, log = start_up(tmp_path)
    stack = descendants(process.pid)
    try:
        data = tmp_path / "data"
        url_file = data / REDIS_URL_FILE
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600 and url_file.stat().st_uid == os.getuid()
        url = url_file.read_text().strip()
        parsed = urlparse(url)
        password = unquote(parsed.password)
        assert parsed.username == "cadre" and len(password) >= 40 and parsed.hostname == "127.0.0.1"

        assert unauthenticated_reply(parsed.port).startswith(b"-NOAUTH Authentication required")
        assert_cadre_user_is_limited(url)

        assert "password-protected" in log.read_text() and str(url_file) in log.read_text().replace("\n", "")
        assert password not in log.read_text()
        assert password not in command_lines(descendants(process.pid)), "a password on a command line"
        assert loopback_only(parsed.port)

        # another shell of the same user: no CADRE_REDIS_URL anywhere, only the data dir
        env = other_shell_env(data)

        def cadre(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)

        # (first without touching any Redis: should it resolve elsewhere, nothing is written into another one)
        resolved = subprocess.run([sys.executable, "-c", "from orchestrator.config.settings import get_settings; "
                                   "print(get_settings().redis_url)"], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=60)
        assert resolved.stdout.strip() == url, resolved.stderr
        listed = cadre("status", "--json")
        assert listed.returncode == 0, listed.stderr
        started = cadre("run", "--repo", str(remote), "--goal", "Say hello", "--max-cycles", "1")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.splitlines()[0].strip()
        status = cadre("status", run_id, "--json")
        assert status.returncode == 0, status.stderr
        assert f'"id": "{run_id}"' in status.stdout
        assert redis.Redis.from_url(url).exists(f"cadre:run:{run_id}")  # in this Redis, not another
    finally:
        stop(process, stack)


def test_cadre_up_gives_the_cadre_user_the_password_of_a_given_url(tmp_path):
    """A CADRE_REDIS_URL with a password: that password is the `cadre` user's, the db is kept, `default`
    still gets a fresh one."""
    port = free_port()
    given = f"redis://someone:given-pw-{port}@127.0.0.1:{port}/3"
    process, _log = start_up(tmp_path, redis_url=given)
    stack = descendants(process.pid)
    try:
        url = (tmp_path / "data" / REDIS_URL_FILE).read_text().strip()
        assert url == f"redis://cadre:given-pw-{port}@127.0.0.1:{port}/3"
        assert unauthenticated_reply(port).startswith(b"-NOAUTH")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password=f"given-pw-{port}").ping()  # not the admin's
        assert_cadre_user_is_limited(url)
        assert loopback_only(port)
    finally:
        stop(process, stack)


def test_cadre_up_again_with_no_url_set_reuses_the_url_it_left(tmp_path):
    """Stopped and started again from a shell with no CADRE_REDIS_URL: the same `cadre` URL (clients
    that kept it still work) and the same data, but a fresh password for `default`."""
    process, _log = start_up(tmp_path)
    stack = descendants(process.pid)
    try:
        url = (tmp_path / "data" / REDIS_URL_FILE).read_text().strip()
        redis.Redis.from_url(url).set("cadre:kept", "yes")
    finally:
        stop(process, stack)
    env = other_shell_env(tmp_path / "data")
    log = tmp_path / "up-again.log"
    again = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "up", "--workers", "1", "--flower-port",
                              "0"], env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_until(lambda: "Cadre is up" in log.read_text() or again.poll() is not None, 60, "cadre up did not start")
    stack = descendants(again.pid)
    try:
        assert again.poll() is None, log.read_text()
        assert (tmp_path / "data" / REDIS_URL_FILE).read_text().strip() == url
        assert redis.Redis.from_url(url).get("cadre:kept") == b"yes"
        assert unauthenticated_reply(urlparse(url).port).startswith(b"-NOAUTH")
    finally:
        stop(again, stack)


def test_the_demo_redis_is_protected_the_same_way(tmp_path):
    """`cadre demo`'s private Redis is a `RedisServer.protected` one: closed, the same `cadre` user, no
    password on its command line, and only its admin (`default`) may reconfigure it."""
    server = RedisServer.protected(tmp_path / "redis").start()
    try:
        assert unauthenticated_reply(server.port).startswith(b"-NOAUTH")
        assert_cadre_user_is_limited(server.url)
        cmdline = command_lines({server.process.pid})
        assert server.password not in cmdline and server.cadre_password not in cmdline
        assert redis.Redis(port=server.port, password=server.password).config_get("requirepass")  # the admin may
    finally:
        server.stop()


def test_a_redis_that_refuses_the_url_is_an_error_not_a_reason_to_start_another(tmp_path):
    from orchestrator.local.up import ensure_redis
    from orchestrator.state.records import StoreUnavailable

    server = RedisServer.protected(tmp_path / "redis").start()
    try:
        for url in (f"redis://127.0.0.1:{server.port}/0", f"redis://cadre:wrong-password@127.0.0.1:{server.port}/0"):
            with pytest.raises(StoreUnavailable, match="refused Cadre") as refused:
                ensure_redis(url, tmp_path / "data")
            assert "wrong-password" not in str(refused.value)
        assert ensure_redis(server.url, tmp_path / "data") is None  # it answers: nothing started
        assert not (tmp_path / "data" / "redis").exists()
    finally:
        server.stop()
