"""The egress bridge: the sandbox's first program hands its listener to the proxy, once, and nothing else is
taken. Real sockets and, where bubblewrap runs, a real sandbox with its own network namespace."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.agent.commands import shell_for
from orchestrator.agent.egress import EgressProxy
from orchestrator.agent.egress_bridge import ListenerCourier
from orchestrator.agent.sandbox import Bridge
from orchestrator.config.settings import CadreSettings

PORT = 3128


@pytest.fixture
def folder():
    path = Path(tempfile.mkdtemp(prefix="bridge", dir="/tmp"))  # short: unix socket paths end at 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hand_over(path: Path, fd: int) -> bytes:
    courier = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    courier.settimeout(5)
    courier.connect(str(path))
    socket.send_fds(courier, [b"listener"], [fd])
    try:
        return courier.recv(1)
    finally:
        courier.close()


def test_a_listener_is_adopted_once_and_the_courier_is_gone(folder):
    with EgressProxy(folder / "proxy.sock", ["127.0.0.1:9"]) as proxy, \
            ListenerCourier(folder / "bridge.sock", PORT, proxy) as courier:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        # Not on the bridge's port: refused, and the one hand-over is spent.
        assert hand_over(folder / "bridge.sock", listener.fileno()) == b""
        assert not courier.delivered.is_set()
        assert not (folder / "bridge.sock").exists()
        with pytest.raises(OSError):
            hand_over(folder / "bridge.sock", listener.fileno())
        listener.close()


@pytest.mark.parametrize("kind", ["connected socket", "unix listener", "file"])
def test_anything_but_a_tcp_listener_on_the_port_is_refused(folder, kind):
    with EgressProxy(folder / "proxy.sock", ["127.0.0.1:9"]) as proxy, \
            ListenerCourier(folder / "bridge.sock", PORT, proxy) as courier:
        handle = open(folder / "f", "w")  # noqa: SIM115
        offered = other = None
        if kind == "connected socket":
            offered, other = socket.socketpair()
        elif kind == "unix listener":
            offered = socket.socket(socket.AF_UNIX)
            offered.bind(str(folder / "other.sock"))
            offered.listen()
        assert hand_over(folder / "bridge.sock", offered.fileno() if offered else handle.fileno()) == b""
        assert not courier.delivered.is_set()
        for sock in (offered, other):
            if sock is not None:
                sock.close()
        handle.close()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from outside"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_an_agent_in_its_own_network_namespace_reaches_only_the_allowed_host_through_the_bridge(folder, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    allowed = f"127.0.0.1:{server.server_address[1]}"
    url = f"http://{allowed}/"
    script = ("import sys, urllib.request\n"
              f"print(urllib.request.urlopen({url!r}, timeout=10).read().decode())\n"
              "try:\n"
              "    urllib.request.urlopen('http://127.0.0.1:1/', timeout=10)\n"
              "except Exception as exc:\n"
              "    print('refused:', exc)\n")
    settings = CadreSettings(sandbox_mode="bwrap", data_dir=tmp_path / "data")
    proxy_env = {name: f"http://127.0.0.1:{PORT}" for name in ("HTTP_PROXY", "http_proxy")}
    try:
        with EgressProxy(folder / "proxy.sock", [allowed]) as proxy, \
                ListenerCourier(folder / "bridge.sock", PORT, proxy) as courier:
            shell = shell_for(settings, tmp_path, extra_env=proxy_env | {"NO_PROXY": "", "no_proxy": ""},
                              bridge=Bridge(PORT, folder / "bridge.sock"))
            code, output = shell.run([sys.executable, "-I", "-c", script], 60)
            assert courier.delivered.is_set()
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, output
    assert "hello from outside" in output
    assert "refused:" in output and "403" in output, output
    assert proxy.denied == ["127.0.0.1:1"]


def test_a_command_is_waited_for_in_a_process_with_over_a_thousand_descriptors_open(tmp_path):
    """Hundreds of light slots keep many descriptors open: waiting for a command must not depend on select()'s
    limit of 1,024, nor poll its process in a loop."""
    import resource

    from orchestrator.agent.commands import run_command

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open("/dev/null", os.O_RDONLY))
        code, output = run_command(["sh", "-c", "sleep 0.3; echo done; exit 3"], tmp_path, 10,
                                   output_path=tmp_path / "out.log")
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (code, output) == (3, "done\n")
