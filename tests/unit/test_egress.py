"""The egress proxy with real sockets: a client on its unix socket, real servers on 127.0.0.1 behind it.

What the agent sends is hostile: each test plays the agent's side of the socket byte by byte and checks
what reaches the servers (only allowed destinations, no proxy credentials) and what comes back.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from orchestrator.agent.egress import ESTABLISHED, EgressProxy, allowed_hosts

TIMEOUT = 3.0


class EchoServer:
    """A TCP server on 127.0.0.1 that echoes every connection; counts connections and notes their ends."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass
        self.closed.set()


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with a fixed body and records what it saw on its server."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._record(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._record(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _record(self, body: bytes) -> None:
        self.server.seen.append((self.command, self.path, dict(self.headers.items()), body))  # type: ignore[attr-defined]
        payload = b"hello from upstream"
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.listener.close()


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    server.seen = []  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def socket_path():
    folder = Path(tempfile.mkdtemp(prefix="egress", dir="/tmp"))  # short: unix socket paths end at 108 bytes
    yield folder / "proxy.sock"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def proxy_for(socket_path):
    started: list[EgressProxy] = []

    def start(*allowed: str, **options) -> EgressProxy:
        started.append(EgressProxy(socket_path, allowed, connect_timeout=2.0, **options).start())
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def connect(proxy: EgressProxy) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(TIMEOUT)
    try:
        client.connect(str(proxy.socket_path))
    except OSError:
        client.close()
        raise
    return client


def read_until_closed(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def read_head(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(1)
        assert chunk, f"closed before the end of the head: {data!r}"
        data += chunk
    return data


def ask(proxy: EgressProxy, request: bytes) -> bytes:
    with connect(proxy) as client:
        client.sendall(request)
        return read_until_closed(client)


def test_connect_to_an_allowed_host_relays_bytes_both_ways(proxy_for, echo):
    proxy = proxy_for(f"127.0.0.1:{echo.port}")
    assert stat.S_IMODE(proxy.socket_path.stat().st_mode) == 0o600
    with connect(proxy) as client:
        # The TLS hello may come with the CONNECT itself: it must reach the server after the 200.
        client.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\nearly".encode())
        assert read_head(client) == ESTABLISHED
        assert client.recv(5) == b"early"
        for message in (b"ping", b"x" * 100_000):
            client.sendall(message)
            got = b""
            while len(got) < len(message):
                got += client.recv(65536)
            assert got == message
    assert proxy.allowed_count == 1 and proxy.denied == []
    assert echo.closed.wait(TIMEOUT), "the client's close reaches the server"


def test_connect_to_a_port_not_allowed_is_refused_before_any_connection(proxy_for, echo):
    other = EchoServer()
    proxy = proxy_for(f"127.0.0.1:{echo.port}")
    answer = ask(proxy, f"CONNECT 127.0.0.1:{other.port} HTTP/1.1\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\n"
                 .encode())
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 403 Forbidden")
    assert body.decode() == (f"cadre: egress to 127.0.0.1:{other.port} is not allowed by the sandbox "
                             f"(allowed: 127.0.0.1:{echo.port})\n")
    assert proxy.denied == [f"127.0.0.1:{other.port}"] and proxy.allowed_count == 0
    assert other.accepted == 0 and echo.accepted == 0
    assert b"c2VjcmV0" not in answer
    other.listener.close()


def test_plain_http_goes_out_in_origin_form_without_proxy_headers(proxy_for, web):
    port = web.server_address[1]
    proxy = proxy_for(f"127.0.0.1:{port}")
    answer = ask(proxy, (f"GET http://127.0.0.1:{port}/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
                         "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Api-Key: sk-test\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"\r\n\r\nhello from upstream")
    [(method, path, headers, _body)] = web.seen
    assert (method, path) == ("GET", "/x?y=1")
    assert not any(name.lower().startswith("proxy-") for name in headers), headers
    assert headers["Connection"] == "close" and "X-Hop" not in headers
    assert headers["Host"] == f"127.0.0.1:{port}" and headers["X-Api-Key"] == "sk-test"
    assert proxy.allowed_count == 1


def test_plain_http_post_carries_its_body_and_host_comes_from_the_url(proxy_for, web):
    port = web.server_address[1]
    proxy = proxy_for(f"127.0.0.1:{port}")
    answer = ask(proxy, (f"POST http://127.0.0.1:{port}/v1/chat HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                         "Content-Length: 7\r\n\r\n{\"a\":1}").encode())
    assert answer.endswith(b"hello from upstream")
    [(method, path, headers, body)] = web.seen
    assert (method, path, body) == ("POST", "/v1/chat", b'{"a":1}')
    assert headers["Host"] == f"127.0.0.1:{port}"


@pytest.mark.parametrize("target", ["http://127.0.0.1:{other}/x", "http://169.254.169.254/latest/meta-data/",
                                    "http://LOCALHOST:{port}/"])
def test_plain_http_not_allowed_is_refused(proxy_for, web, target):
    port = web.server_address[1]
    proxy = proxy_for(f"127.0.0.1:{port}")
    url = target.format(port=port, other=port + 1 if port < 65535 else port - 1)
    answer = ask(proxy, f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden")
    assert len(proxy.denied) == 1 and web.seen == []
    assert url.lower().split("/")[2] in proxy.denied[0]


MALFORMED = [
    b"garbage\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # origin form: not a proxy request
    b"GET https://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n",  # TLS is the client's to do, through CONNECT
    b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",  # CONNECT needs a port
    b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
    b"CONNECT ::1:443 HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:{port} HTTP/2.0\r\n\r\n",
    b"GET http://127.0.0.1:{port}/  HTTP/1.1\r\n\r\n",
    b"GET http://user@127.0.0.1:{port}/ HTTP/1.1\r\n\r\n",
    b"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    b"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nX-A : 1\r\n\r\n",
    b"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nX-A: 1\nHost: evil\r\n\r\n",
    b"GET http://h\xc3\xa9:{port}/ HTTP/1.1\r\n\r\n",
    b"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000,  # and no end in sight
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_requests_get_400_and_go_nowhere(proxy_for, web, request_bytes):
    port = web.server_address[1]
    proxy = proxy_for(f"127.0.0.1:{port}")
    answer = ask(proxy, request_bytes.replace(b"{port}", str(port).encode()))
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
    assert web.seen == [] and proxy.denied == [] and proxy.allowed_count == 0


def test_a_slow_head_times_out_and_extra_connections_are_closed_at_once(proxy_for, echo):
    proxy = proxy_for(f"127.0.0.1:{echo.port}", head_timeout=0.3, max_connections=2)
    first, second = connect(proxy), connect(proxy)
    first.sendall(b"CONNECT 127.0.0.1:")  # and nothing more
    with connect(proxy) as third:
        assert read_until_closed(third) == b"", "past the cap a connection is closed without a word"
    started = time.monotonic()
    assert read_until_closed(first).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 1.0
    assert read_until_closed(second).startswith(b"HTTP/1.1 408")
    first.close(), second.close()
    with connect(proxy) as fourth:  # the slots are free again
        fourth.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(fourth) == ESTABLISHED


def test_stop_closes_open_relays_and_unlinks_the_socket(proxy_for, echo):
    proxy = proxy_for(f"127.0.0.1:{echo.port}")
    idle = connect(proxy)  # still sending its head
    with connect(proxy) as client:
        client.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(client) == ESTABLISHED
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 1.5
        assert read_until_closed(client) == b""
    assert read_until_closed(idle) == b""
    idle.close()
    assert echo.closed.wait(TIMEOUT), "the server's side of the relay is closed too"
    assert not proxy.socket_path.exists()
    proxy.stop()  # idempotent
    with pytest.raises(OSError):
        connect(proxy)


def test_start_replaces_a_stale_socket_but_never_another_file(socket_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()
    with EgressProxy(socket_path, ["api.openai.com:443"]) as proxy:
        assert stat.S_ISSOCK(socket_path.lstat().st_mode) and proxy.allowed == {"api.openai.com:443"}
    assert not socket_path.exists()
    socket_path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        EgressProxy(socket_path, []).start()
    assert socket_path.read_text() == "not a socket"


def test_the_proxy_allowlist_needs_ports_and_is_canonical(socket_path):
    with pytest.raises(ValueError, match="not host:port"):
        EgressProxy(socket_path, ["api.openai.com"])
    proxy = EgressProxy(socket_path, ["API.OpenAI.com:443", "[0:0::1]:8080", " 127.0.0.1:80 "])
    assert proxy.allowed == {"api.openai.com:443", "[::1]:8080", "127.0.0.1:80"}


@pytest.mark.parametrize(("api_base", "model", "extra", "expected"), [
    ("https://Models.Example.com/v1", "openai/gpt-4o", (), {"models.example.com:443"}),
    ("http://127.0.0.1:8000/v1", "openai/scripted", (), {"127.0.0.1:8000"}),
    ("http://llm.lan", "ollama/llama3", (), {"llm.lan:80"}),
    ("https://[::1]:8443/", "x/y", (), {"[::1]:8443"}),
    (None, "openai/gpt-4o-mini", (), {"api.openai.com:443"}),
    (None, "anthropic/claude-sonnet-4", (), {"api.anthropic.com:443"}),
    (None, "gemini/gemini-2.0-flash", (), {"generativelanguage.googleapis.com:443"}),
    (None, "OpenRouter/meta/llama", (), {"openrouter.ai:443"}),
    (None, "azure/my-deployment", (), set()),
    ("", "mistral/mistral-large", ["Extra.example.com", "pypi.org:443", "10.0.0.5:8080"],
     {"api.mistral.ai:443", "extra.example.com:443", "pypi.org:443", "10.0.0.5:8080"}),
])
def test_allowed_hosts(api_base, model, extra, expected):
    assert allowed_hosts(api_base, model, extra) == frozenset(expected)


@pytest.mark.parametrize(("api_base", "extra"), [
    (None, ["http://pypi.org"]), (None, ["pypi.org:http"]), (None, [""]), (None, ["::1"]),
    (None, ["host:0"]), (None, ["bad_host!:443"]), ("models.example.com:8000", []), ("ftp://x/", []),
    ("https://x:99999/", []),
])
def test_allowed_hosts_refuses_what_it_cannot_parse(api_base, extra):
    with pytest.raises(ValueError) as raised:
        allowed_hosts(api_base, "openai/gpt-4o", extra)
    assert "\n" not in str(raised.value)
