"""A scriptable loopback HTTP server for client tests.

Tests queue the replies the server should give (status, headers, body, an optional delay, or
"drop the connection mid-response") and afterwards inspect the requests it recorded, with the
raw request target so percent-encoding can be checked exactly as it went over the wire.
Using a real socket (rather than a mock transport) exercises httpx's pooling, keep-alive and
error paths the way production does.

The server binds 127.0.0.1 on a free port, runs in daemon threads and stops when its context
manager exits, so nothing outlives a test.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["RecordedRequest", "Reply", "ScriptedServer"]


@dataclass
class Reply:
    """One scripted answer. A non-bytes ``body`` is sent as JSON.

    ``drop=True`` sends the status line, headers announcing the full length and only part of
    the body, then closes the socket: the client sees a connection lost mid-response.
    """

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0

    def payload(self) -> tuple[bytes, str | None]:
        if isinstance(self.body, bytes):
            return self.body, None
        return json.dumps(self.body).encode(), "application/json"


@dataclass
class RecordedRequest:
    """What the server received; ``headers`` keys are lower-case."""

    method: str
    target: str  # raw request target as sent: path plus query string, still percent-encoded
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Responder = Callable[[RecordedRequest], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    timeout = 5  # an idle keep-alive connection frees its thread quickly
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            target=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        owner._enter(request)
        try:
            reply = owner._next_reply(request)
            if reply.delay:
                time.sleep(reply.delay)
            self._send(reply)
        finally:
            owner._leave()

    def _send(self, reply: Reply) -> None:
        payload, content_type = reply.payload()
        self.send_response(reply.status)
        names = {k.lower() for k in reply.headers}
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if content_type and "content-type" not in names:
            self.send_header("Content-Type", content_type)
        if reply.drop:
            self.send_header("Content-Length", str(len(payload) + 100))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer


class ScriptedServer:
    """Context manager: start on a free loopback port, stop on exit."""

    def __init__(self, default: Reply | Responder | None = None) -> None:
        self._default: Reply | Responder = default or Reply(200, {"ia::result": {}})
        self._replies: collections.deque[Reply | Responder] = collections.deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """A base_url shaped like Intacct's (``.../ia/api/v1``)."""
        return self.url + "/ia/api/v1"

    def queue(self, *replies: Reply | Responder) -> None:
        """Answer the next requests with these replies, in order, then with the default."""
        with self._lock:
            self._replies.extend(replies)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            scripted = self._replies.popleft() if self._replies else self._default
        return scripted(request) if callable(scripted) else scripted

    def _enter(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
