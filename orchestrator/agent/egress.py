"""The egress proxy: an external agent's one way out of its sandbox, and the allowlist it enforces.

An external coding agent (Claude Code, codex, aider, mini-swe-agent) runs in its own network namespace with
no network at all. Its one way out is this HTTP proxy, running in the worker process outside the sandbox: on
127.0.0.1:PORT inside the agent's namespace, a listener the sandbox's first program made there and handed
out (`egress_bridge`; the agent gets HTTP(S)_PROXY), and on a UNIX socket (tests, tools).
It serves `CONNECT host:port` and absolute-form plain HTTP to the `host:port` entries it was given (the model
endpoints, see `allowed_hosts`) and refuses everything else: no Redis, no LAN, no cloud metadata service.

The trust boundary: every byte on the socket comes from the agent and is hostile input. The request head is
read within a size and a time bound and parsed strictly (anything unusual is a 400, never a guess); the
destination is matched as one canonical `host:port` string against the allowlist before any DNS lookup or
connection; headers and bodies are never logged or echoed (they carry API keys), only a refused `host:port`.
What passes is a byte stream to an allowed endpoint: the proxy does not look inside TLS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import socket
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from orchestrator.agent.egress_allowlist import Endpoint, allowed_hosts, canonical_entry, parse_endpoint

__all__ = ["ESTABLISHED", "EgressProxy", "allowed_hosts"]
log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT_SECONDS = 30.0
MAX_CONNECTIONS = 256
# A model may think for many minutes before its first byte; only a relay silent for longer is dropped.
RELAY_IDLE_SECONDS = 1800.0
CHUNK = 64 * 1024
# A hostile agent looping on refused requests must not grow the worker's memory without end.
DENIED_KEPT = 10_000
# stop() waits this long for connection threads after shutting their sockets (one stuck in DNS may not end).
STOP_GRACE_SECONDS = 1.0
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")


class _BadRequest(Exception):
    """The request head cannot be served; the message is fixed text, never the client's bytes."""


def _parse_head(head: bytes) -> tuple[Endpoint, bytes | None]:
    """Where the request `head` (without its closing blank line) goes, and the head to send there first
    (None for a CONNECT tunnel); _BadRequest for any other form of request."""
    request_line, *header_lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if (len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1])
            or not _VERSION.fullmatch(parts[2])):
        raise _BadRequest("malformed request line")
    method, target, version = parts
    headers = [_header(line) for line in header_lines]
    if method == b"CONNECT":
        return _request_endpoint(target, None), None
    if target[:7].lower() != b"http://":
        raise _BadRequest("only CONNECT host:port and absolute http:// requests are served")
    rest = target[7:]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if b"@" in authority or b"#" in tail:
        raise _BadRequest("user info and fragments are not served")
    endpoint = _request_endpoint(authority, 80)
    origin = tail if tail.startswith(b"/") else b"/" + tail
    # Hop-by-hop headers stop here: the proxy's own (Proxy-*: credentials for it), the connection's, and any
    # the client named in Connection. Host is rewritten so that the URL alone decides where a request goes.
    hop = {b"connection", b"keep-alive", b"host"}
    for name, value in headers:
        if name.lower() == b"connection":
            hop.update(token.strip().lower() for token in value.split(b","))
    lines = [method + b" " + origin + b" " + version, b"Host: " + endpoint.key.removesuffix(":80").encode()]
    lines += [name + b": " + value for name, value in headers
              if name.lower() not in hop and not name.lower().startswith(b"proxy-")]
    return endpoint, b"\r\n".join([*lines, b"Connection: close", b"", b""])


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    # A folded line, a space before the colon or a stray CR/LF/NUL could make the endpoint read headers this
    # parser did not see.
    if not colon or not _TOKEN.fullmatch(name) or any(c in value for c in b"\r\n\x00"):
        raise _BadRequest("malformed header line")
    return name, value.strip(b" \t")


def _request_endpoint(authority: bytes, default_port: int | None) -> Endpoint:
    try:
        return parse_endpoint(authority.decode("ascii"), default_port)
    except ValueError as exc:  # a UnicodeDecodeError is one too; its message quotes no bytes
        raise _BadRequest(f"bad host:port: {exc}") from None


def _answer(conn: socket.socket, status: int, reason: str, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii") + body)


class EgressProxy:
    """An allowlisting HTTP proxy on a UNIX socket (see the module docstring), one thread per connection.

    `allowed`: `host:port` entries, canonicalised (ValueError for one without a port or unparsable).
    `denied`: the `host:port` of each refused request (the first `DENIED_KEPT`); `allowed_count`: requests
    let through. Past `max_connections` open connections a new one is closed at once.
    """

    def __init__(self, socket_path: Path, allowed: Iterable[str], connect_timeout: float = 10.0, *,
                 head_timeout: float = HEAD_TIMEOUT_SECONDS, max_connections: int = MAX_CONNECTIONS) -> None:
        self.socket_path = Path(socket_path)
        self.allowed = frozenset(canonical_entry(entry, None) for entry in allowed)
        self.connect_timeout = connect_timeout
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self.denied: list[str] = []
        self.allowed_count = 0  # requests let through: tunnels opened and plain requests forwarded
        self._allowed_text = ", ".join(sorted(self.allowed)) or "nothing"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._adopted: list[tuple[socket.socket, threading.Thread]] = []
        self._inode: int | None = None

    def start(self) -> EgressProxy:
        """Listen on `socket_path` (mode 0o600; a stale socket there is replaced, any other file is an error)
        and serve in daemon threads. Returns self."""
        if self._listener is not None or self._stopping.is_set():
            raise RuntimeError("an EgressProxy starts once")
        if self.socket_path.is_symlink() or self.socket_path.exists():
            if not stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                raise FileExistsError(f"{self.socket_path} exists and is not a socket")
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            # Until listen() every connect is refused, so the mode is set before anyone can get in.
            os.chmod(self.socket_path, 0o600)
            self._inode = self.socket_path.lstat().st_ino
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(listener,), name="cadre-egress-accept",
                                               daemon=True)
        self._accept_thread.start()
        log.info("egress proxy on %s allows %s", self.socket_path, self._allowed_text)
        return self

    def stop(self) -> None:
        """Stop accepting, shut every open connection (clients and endpoints see the end at once) and unlink
        the socket. Idempotent. Blocks at most 2 x `STOP_GRACE_SECONDS` (accept thread, then connection
        threads); a thread still resolving or connecting closes its sockets itself when that returns."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            open_sockets, handlers = list(self._open), list(self._handlers)
        listeners = [(self._listener, self._accept_thread)] if self._listener and self._accept_thread else []
        for listener, accepting in (*listeners, *self._adopted):
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # on Linux this wakes the blocked accept()
            accepting.join(STOP_GRACE_SECONDS)
            listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):  # already closed by its peer: nothing left to end
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.lstat().st_ino == self._inode:  # never a file someone else put there since
                self.socket_path.unlink()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> EgressProxy:
        return self if self._listener is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def adopt(self, listener: socket.socket) -> None:
        """Serve the clients of another listening socket too (the one made inside an agent's sandbox), until
        stopped; it is closed then."""
        accepting = threading.Thread(target=self._accept_loop, args=(listener,), name="cadre-egress-adopted",
                                     daemon=True)
        with self._lock:
            if self._stopping.is_set():
                listener.close()
                return
            self._adopted.append((listener, accepting))
        accepting.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                if not self._stopping.is_set():  # out of descriptors, say: accepting again at once would spin
                    log.warning("egress proxy: accept failed; still serving", exc_info=True)
                    self._stopping.wait(0.1)
                continue
            try:
                self._admit(conn)
            except Exception:  # no thread left, say: this connection is lost, the proxy is not
                log.exception("egress proxy: cannot serve a connection; still serving")

    def _admit(self, conn: socket.socket) -> None:
        """Serve `conn` in a thread of its own, or close it at once when stopping or full."""
        thread = threading.Thread(target=self._serve, args=(conn,), name="cadre-egress", daemon=True)
        with self._lock:
            admitted = not self._stopping.is_set() and len(self._handlers) < self.max_connections
            if admitted:
                self._open.add(conn)
                self._handlers.add(thread)
        if not admitted:
            conn.close()
            return
        try:
            thread.start()
        except BaseException:
            self._forget(thread, conn)
            conn.close()
            raise

    def _forget(self, thread: threading.Thread, *sockets: socket.socket | None) -> None:
        with self._lock:
            self._handlers.discard(thread)
            self._open.difference_update(sockets)

    def _serve(self, conn: socket.socket) -> None:
        """One client connection, from its request head to the end of its relay; closes every socket it
        opened, whatever happens."""
        upstream: socket.socket | None = None
        try:
            try:
                received = self._read_head(conn)
                if received is None:
                    return
                endpoint, upstream_head = _parse_head(received[0])
            except _BadRequest as exc:
                return _answer(conn, 400, "Bad Request", f"cadre: bad proxy request ({exc})")
            except TimeoutError:
                return _answer(conn, 408, "Request Timeout", "cadre: the request head did not arrive in time")
            key = endpoint.key
            if key not in self.allowed:
                self._deny(key)
                return _answer(conn, 403, "Forbidden",
                               f"cadre: egress to {key} is not allowed by the sandbox (allowed: {self._allowed_text})")
            try:
                upstream = socket.create_connection((endpoint.host, endpoint.port), timeout=self.connect_timeout)
            except OSError as exc:
                return _answer(conn, 502, "Bad Gateway", f"cadre: cannot reach {key} ({exc.strerror or exc})")
            with self._lock:
                if self._stopping.is_set():  # stop() has shut the others; this one came too late to be seen
                    return
                self._open.add(upstream)
                self.allowed_count += 1
            log.debug("egress to %s", key)
            if upstream_head is None:
                conn.sendall(ESTABLISHED)
            if first := (upstream_head or b"") + received[1]:
                upstream.sendall(first)
            self._relay(conn, upstream)
        except OSError as exc:  # a peer went away or stop() shut the sockets: the connection is over
            log.debug("egress connection ended: %s", type(exc).__name__)
        except Exception as exc:  # never the message: it could quote what the agent sent
            log.warning("egress connection failed: %s", type(exc).__name__)
        finally:
            self._forget(threading.current_thread(), conn, upstream)
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()

    def _read_head(self, conn: socket.socket) -> tuple[bytes, bytes] | None:
        """(the request head without its blank line, the bytes after it), None if the client left first;
        _BadRequest past `HEAD_LIMIT`, TimeoutError past `head_timeout` for the whole head."""
        deadline = time.monotonic() + self.head_timeout
        buffer = bytearray()
        searched = 0
        while (end := buffer.find(b"\r\n\r\n", searched)) < 0:
            if len(buffer) > HEAD_LIMIT:
                raise _BadRequest("request head over 64 KiB")
            searched = max(0, len(buffer) - 3)  # a client dripping bytes must not make each search rescan all
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            conn.settimeout(remaining)
            if not (chunk := conn.recv(CHUNK)):
                return None
            buffer += chunk
        if end > HEAD_LIMIT:
            raise _BadRequest("request head over 64 KiB")
        return bytes(buffer[:end]), bytes(buffer[end + 4:])

    def _deny(self, key: str) -> None:
        log.info("egress to %s refused: not in the sandbox's allowlist", key)
        with self._lock:
            if len(self.denied) < DENIED_KEPT:
                self.denied.append(key)

    def _relay(self, conn: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until either side closes or errs, or both stay silent `RELAY_IDLE_SECONDS`."""
        conn.settimeout(RELAY_IDLE_SECONDS)  # also bounds a send to a peer that stopped reading
        upstream.settimeout(RELAY_IDLE_SECONDS)
        with selectors.DefaultSelector() as selector:
            selector.register(conn, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, conn)
            while events := selector.select(RELAY_IDLE_SECONDS):
                for key, _ in events:
                    if not (data := key.fileobj.recv(CHUNK)):  # type: ignore[union-attr]
                        return
                    key.data.sendall(data)
