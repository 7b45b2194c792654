"""A local, OpenAI-compatible chat-completions server whose replies come from a Python policy.

Tests (and demos) point litellm at `ScriptedModelServer.base_url` with an `openai/<anything>` model,
so real HTTP calls are made but every answer is decided by a plain function:

    def policy(request: dict) -> ScriptedReply | ScriptedError:
        return reply(call("write_file", path="a.txt", text="hi"))

    with ScriptedModelServer(policy) as server:
        litellm.completion(model="openai/scripted", api_base=server.base_url, api_key="x", messages=[...])

Only the standard library is used; this module deliberately does not import litellm.
Run it standalone with `python -m orchestrator.testing.scripted_model --policy package.module:function`.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolCall:
    """One scripted tool call. A dict `arguments` is JSON-encoded; a str is sent verbatim."""

    name: str
    arguments: dict | str


@dataclass(frozen=True)
class ScriptedReply:
    """An assistant message. Token counts default to rough estimates when left as None."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))


@dataclass(frozen=True)
class ScriptedError:
    """Makes the server answer with HTTP `status` and an OpenAI-style error body."""

    status: int
    message: str
    type: str = "error"
    code: str | None = None


Policy = Callable[[dict], ScriptedReply | ScriptedError]
"""Receives the parsed JSON request body and decides the answer."""


def reply(*calls: ToolCall, content: str | None = None) -> ScriptedReply:
    """Build a reply carrying `calls` (in order) and optional text content."""
    return ScriptedReply(content=content, tool_calls=calls)


def call(name: str, **arguments: Any) -> ToolCall:
    """Build a tool call whose keyword arguments become its JSON arguments."""
    return ToolCall(name=name, arguments=arguments)


def _error_body(message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _tool_call_json(tc: ToolCall) -> dict:
    args = tc.arguments if isinstance(tc.arguments, str) else json.dumps(tc.arguments)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": tc.name, "arguments": args},
    }


def _usage(request: dict, rep: ScriptedReply, tool_calls: list[dict]) -> dict:
    prompt = rep.prompt_tokens
    if prompt is None:
        prompt = max(1, len(json.dumps(request.get("messages", []))) // 4)
    completion = rep.completion_tokens
    if completion is None:
        text = (rep.content or "") + "".join(tc["function"]["arguments"] for tc in tool_calls)
        completion = max(1, len(text) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Handler(BaseHTTPRequestHandler):
    """Speaks just enough of the OpenAI REST API for chat completions."""

    server: _HTTPServer
    server_version = "CadreScriptedModel/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": "scripted", "object": "model", "created": 0, "owned_by": "cadre"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, _error_body(f"no route GET {self.path}", "invalid_request_error"))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(f"no route POST {self.path}", "invalid_request_error"))
            return
        try:
            request = json.loads(self._read_body() or b"null")
            if not isinstance(request, dict):
                raise ValueError("request body must be a JSON object")
        except ValueError as exc:
            self._send_json(400, _error_body(f"invalid JSON body: {exc}", "invalid_request_error"))
            return
        self.server.owner._record(request)
        try:
            outcome = self.server.owner.policy(copy.deepcopy(request))
            if not isinstance(outcome, (ScriptedReply, ScriptedError)):
                raise TypeError(f"policy returned {type(outcome).__name__}, not ScriptedReply/ScriptedError")
        except Exception as exc:  # a broken policy must answer, not hang or kill the server
            logger.exception("scripted model policy failed")
            self._send_json(500, _error_body(f"policy raised {type(exc).__name__}: {exc}", "server_error"))
            return
        if isinstance(outcome, ScriptedError):
            self._send_json(outcome.status, _error_body(outcome.message, outcome.type, outcome.code))
        elif request.get("stream"):
            self._send_stream(request, outcome)
        else:
            self._send_completion(request, outcome)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            self.rfile.readline()  # final CRLF (no trailers expected)
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_completion(self, request: dict, rep: ScriptedReply) -> None:
        tool_calls = [_tool_call_json(tc) for tc in rep.tool_calls]
        message: dict[str, Any] = {"role": "assistant", "content": rep.content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }],
            "usage": _usage(request, rep, tool_calls),
        })

    def _send_stream(self, request: dict, rep: ScriptedReply) -> None:
        tool_calls = [_tool_call_json(tc) for tc in rep.tool_calls]
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
        }
        delta: dict[str, Any] = {"role": "assistant", "content": rep.content}
        if tool_calls:
            delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(tool_calls)]
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {},
                                  "finish_reason": "tool_calls" if tool_calls else "stop"}],
             "usage": _usage(request, rep, tool_calls)},
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: ScriptedModelServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        # A client that went away (a killed worker) is expected here; anything else is worth a trace.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            logger.debug("client %s went away before its reply", client_address)
            return
        super().handle_error(request, client_address)


class ScriptedModelServer:
    """Serves `policy` over HTTP in a daemon thread. Usable as a context manager."""

    def __init__(self, policy: Policy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.policy = policy
        self.host = host
        self.port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[dict] = []
        self._lock = threading.Lock()

    def start(self) -> ScriptedModelServer:
        """Bind and start serving; port 0 picks a free port (see `base_url`)."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"scripted-model:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call more than once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. `http://127.0.0.1:54321/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict]:
        """Copies of every chat-completion request body received, oldest first."""
        with self._lock:
            return copy.deepcopy(self._requests)

    def _record(self, request: dict) -> None:
        with self._lock:
            self._requests.append(copy.deepcopy(request))


def load_policy(spec: str) -> Policy:
    """Import `package.module:attr[.attr...]` and return the callable it names."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"policy must look like package.module:function, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def _served(policy: Callable, delay: float, record: str) -> Callable:
    """`policy`, answering each request only after `delay` seconds, and appending it to `record` (JSONL)."""
    lock = threading.Lock()

    def serve(request: dict):
        if record:
            with lock, open(record, "a", encoding="utf-8") as file:
                file.write(json.dumps(request) + "\n")
        time.sleep(delay)
        return policy(request)

    return serve


def main(argv: list[str] | None = None) -> int:
    """Serve a policy until SIGTERM/SIGINT; the base URL is printed alone on stdout's first line."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.testing.scripted_model", description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="package.module:function returning ScriptedReply/ScriptedError")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before every reply (a slow model)")
    parser.add_argument("--record", default="", help="append every request to this JSONL file")
    args = parser.parse_args(argv)
    policy = _served(load_policy(args.policy), args.delay, args.record)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with ScriptedModelServer(policy, host=args.host, port=args.port) as server:
        print(server.base_url, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    # Run the importable copy of this module, so the ScriptedReply/ScriptedError classes a policy
    # imports are the very ones the server checks with isinstance (not `__main__`'s duplicates).
    from orchestrator.testing.scripted_model import main as _main

    sys.exit(_main())
