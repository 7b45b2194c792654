"""The bridge into an external agent's network namespace, without a process of its own per agent.

The agent's sandbox has its own network namespace, with nothing in it but loopback. Its first program
(`sandbox_init`, Cadre's code, before the agent's command exists) opens a TCP listener on 127.0.0.1:PORT
there and hands the listening socket out, over a UNIX socket shown to that sandbox only, to the worker
process, then becomes the agent's command. A socket keeps the namespace it was made in: the worker's egress
proxy accepts the agent's connections on it directly, and nothing relays inside the sandbox.

The courier takes exactly one hand-over and then is gone (its socket closed and unlinked before the agent's
command starts), so the agent can never use it. What it receives is checked before the proxy serves it: a
listening TCP socket bound to 127.0.0.1:PORT, or nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from pathlib import Path

from orchestrator.agent.egress import EgressProxy

log = logging.getLogger(__name__)
HANDOVER_SECONDS = 30.0
ACCEPTED = b"1"


def checked_listener(fd: int, port: int) -> socket.socket | None:
    """The socket of `fd` if it is a listening TCP socket on 127.0.0.1:`port`; else None (and `fd` closed)."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ValueError("not a socket")
        sock = socket.socket(fileno=fd)
    except (OSError, ValueError) as exc:
        log.warning("egress bridge: refused a hand-over (%s)", exc)
        os.close(fd)
        return None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        shape = (sock.family, sock.type, sock.getsockname()) if listening else None
    except OSError:
        shape = None
    if shape != (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", port)):
        log.warning("egress bridge: refused a hand-over (not a TCP listener on 127.0.0.1:%s)", port)
        sock.close()
        return None
    return sock


class ListenerCourier:
    """Receives one listening socket on `path` (mode 0o600) and gives it to `proxy` to serve."""

    def __init__(self, path: Path, port: int, proxy: EgressProxy):
        self.path, self.port, self.proxy = Path(path), port, proxy
        self.delivered = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._thread = threading.Thread(target=self._receive, name="cadre-egress-courier", daemon=True)

    def __enter__(self) -> ListenerCourier:
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(1)
        self._listener.settimeout(HANDOVER_SECONDS)
        self._thread.start()
        return self

    def _receive(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:  # closed (the command never started), or no hand-over in time
            return
        finally:
            self._close_listener()
        with conn:
            conn.settimeout(HANDOVER_SECONDS)
            try:
                _message, fds, _flags, _address = socket.recv_fds(conn, 16, 4)
            except OSError:
                return
            kept = [sock for sock in (checked_listener(fd, self.port) for fd in fds[:1]) if sock is not None]
            for extra in fds[1:]:
                os.close(extra)
            if kept:
                self.proxy.adopt(kept[0])
                self.delivered.set()
                with contextlib.suppress(OSError):
                    conn.sendall(ACCEPTED)

    def _close_listener(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __exit__(self, *exc_info) -> None:
        self._close_listener()  # wakes a receive still waiting
        self._thread.join(5)
