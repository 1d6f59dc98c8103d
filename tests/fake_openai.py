"""A real OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

It speaks HTTP (ThreadingHTTPServer), so the openai client, its connection pool and its
error handling are exercised for real. Each answer is scriptable:

    with FakeOpenAI(responder=lambda body: "head nods; ...") as server:
        server.script(Reply(status=429, headers={"Retry-After": "0.1"}), Reply(fault="reset"))
        ... openai.OpenAI(base_url=server.base_url, api_key="k") ...
        server.requests  # every JSON body that reached /v1/chat/completions, in arrival order
        server.arrivals  # their arrival times (time.monotonic())
        server.max_in_flight  # the most requests it was answering at once

Scripted replies are used first, in order; then ``responder(body)`` (a ``Reply`` or the
answer's text). A model not in ``models`` gets a 404 like OpenAI's ``model_not_found``.
``latency_s`` delays every answer; ``Reply(delay_s=...)`` longer than the client's timeout
makes a timeout.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = (None, "reset", "malformed", "no-choices")


@dataclass
class Reply:
    """One answer. ``fault``: ``reset`` closes the connection (RST) halfway through the body;
    ``malformed`` sends a 200 whose body is not JSON; ``no-choices`` a completion without any."""

    content: str | None = "ok"
    status: int = 200
    finish_reason: str = "stop"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    error: str = "scripted failure"
    code: str | None = None  # error code in the body, as OpenAI's "insufficient_quota"

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {FAULTS}")


Responder = Callable[[dict], "Reply | str"]


def last_user_text(body: dict) -> str:
    """The text of the last user message (text parts joined), for responders."""
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if part.get("type") == "text")


class FakeOpenAI:
    def __init__(self, responder: Responder | None = None, *, models=("fake-model",),
                 latency_s: float = 0.0):
        self.responder = responder or (lambda body: Reply())
        self.models = set(models)
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []  # request headers, names in lower case
        self.arrivals: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self._scripted: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._scripted.extend(replies)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _reply_for(self, body: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.arrivals.append(time.monotonic())
            scripted = self._scripted.popleft() if self._scripted else None
        if body.get("model") not in self.models:
            return Reply(status=404, error=f"The model `{body.get('model')}` does not exist or "
                         "you do not have access to it.")
        reply = scripted or self.responder(body)
        return Reply(content=reply) if isinstance(reply, str) else reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 refuses connections from a concurrent client


def _completion(body: dict, reply: Reply) -> dict:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion",
        "created": int(time.time()), "model": body.get("model"),
        "choices": [] if reply.fault == "no-choices" else [{
            "index": 0, "finish_reason": reply.finish_reason,
            "message": {"role": "assistant", "content": reply.content},
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _error(reply: Reply) -> dict:
    code = reply.code or ("model_not_found" if reply.status == 404 else None)
    return {"error": {"message": reply.error, "type": "invalid_request_error", "param": None,
                      "code": code}}


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers
        disable_nagle_algorithm = True  # else headers and body wait 40 ms for a delayed ACK

        def log_message(self, *args) -> None:  # quiet test output
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, json.dumps({"error": {"message": "no such route"}}).encode())
                return
            body = json.loads(raw)
            with fake._lock:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                self._answer(body)
            finally:
                with fake._lock:
                    fake.in_flight -= 1

        def _answer(self, body: dict) -> None:
            reply = fake._reply_for(body, {k.lower(): v for k, v in self.headers.items()})
            fake._stopping.wait(fake.latency_s + reply.delay_s)
            payload = _completion(body, reply) if reply.status < 400 else _error(reply)
            data = b"{not json" if reply.fault == "malformed" else json.dumps(payload).encode()
            if reply.fault == "reset":
                self._reset_midway(data)
            else:
                self._send(reply.status, data, reply.headers)

        def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) before the answer
                self.close_connection = True

        def _reset_midway(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    return Handler
