"""A small threaded HTTP server on loopback that records every request it receives (simulator and fakes)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""
    at: float = field(default_factory=time.time)  # arrival time, for latency measurements

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the socketserver default of 5 drops connections under concurrent senders
    fake: LoopbackServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read what was recorded instead
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        received = Received(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_path=self.path,
        )
        fake = self.server.fake
        if fake.record:
            with fake.lock:
                fake.received.append(received)
        answer = fake.handle(received)
        if answer is None:  # the fake chose to drop the connection without answering
            self.close_connection = True
            return
        payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        headers = {"Content-Type": "application/json", **answer.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        try:
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class LoopbackServer:
    """Base of the simulator and the test fakes: start() on 127.0.0.1 (port 0 by default), stop(), `received`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.received: list[Received] = []
        self.record = True  # a long-running simulator turns this off, so memory stays flat
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Received) -> Answer | None:
        raise NotImplementedError

    def start(self, *, host: str = "127.0.0.1", port: int = 0) -> Self:
        server = _Server((host, port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait(self, seconds: float) -> None:
        """Sleep that ends early when the server stops, so a slow answer never outlives a test."""
        self.stopping.wait(seconds)

    def requests_to(self, path_suffix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.endswith(path_suffix)]


def request_id() -> str:
    return uuid.uuid4().hex
