"""The load generator: pre-signed raw HTTP/1.1 requests on keep-alive sockets, from a process of its own.

A Python HTTP client costs about a millisecond of CPU per request; on two cores shared with the bot and the
fakes, that cost shows up as latency. Raw sockets and requests built before the clock starts keep the
generator's own share small, and a separate process keeps it off the fakes' interpreter lock. One thread
drives every connection through a selector: with a thread per sender, a sender woken by its response would
first wait for the generator's own interpreter lock, and that wait would be counted as the server's latency.
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import selectors
import socket
import time
from concurrent.futures import ProcessPoolExecutor

Result = tuple[int, float, float, int]  # index, sent_at (epoch), latency (s), HTTP status (0: no response)


def build_request(port: int, body: str, secret: str, timestamp: int) -> bytes:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    payload = body.encode()
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Slack-Request-Timestamp: {timestamp}\r\nX-Slack-Signature: v0={digest}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def take_response(buffer: bytearray) -> tuple[int, bool] | None:
    """If `buffer` starts with a whole response (Content-Length or chunked), remove it and return its status
    and whether the connection stays open."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    at = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            if len(buffer) < line_end + 2 + size + 2:
                return None
            at = line_end + 2 + size + 2
            if size == 0:
                break
    else:
        at += int(headers.get("content-length", "0"))
        if len(buffer) < at:
            return None
    del buffer[:at]
    return status, headers.get("connection", "").lower() != "close"


class _Connection:
    """One keep-alive connection with at most one request outstanding."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.index = -1
        self.sent_at = 0.0
        self.started = 0.0
        self.keep_alive = True

    def send(self, index: int, request: bytes) -> bool:
        self.index, self.sent_at, self.started = index, time.time(), time.perf_counter()
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port))
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buffer.clear()
            self.sock.sendall(request)
        except OSError:
            self.close()
            return False
        return True

    def receive(self) -> Result | None:
        """The result once the whole response is in; None while it is still arriving."""
        assert self.sock is not None
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:  # closed by the server: the caller closes our end
            self.keep_alive = False
            return (self.index, self.sent_at, time.perf_counter() - self.started, 0)
        self.buffer += chunk
        response = take_response(self.buffer)
        if response is None:
            return None
        status, self.keep_alive = response
        return (self.index, self.sent_at, time.perf_counter() - self.started, status)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def blast(port: int, requests: list[bytes], senders: int, pace: float = 0.0) -> list[Result]:
    """Send every request over `senders` keep-alive connections, each waiting for its answer before sending
    again (a closed loop); results sorted by index.

    pace > 0: request i is not sent before start + i * pace (an arrival rate rather than a closed loop).
    """
    results: list[Result] = []
    pending = list(reversed(list(enumerate(requests))))  # pop() takes the next one
    idle = [_Connection(port) for _ in range(min(senders, len(requests)))]
    in_flight = 0
    start = time.perf_counter() + 0.05
    selector = selectors.DefaultSelector()
    try:
        while pending or in_flight:
            while idle and pending and (not pace or start + pending[-1][0] * pace <= time.perf_counter()):
                conn = idle.pop()
                index, request = pending.pop()
                if conn.send(index, request):
                    selector.register(conn.sock, selectors.EVENT_READ, conn)  # type: ignore[arg-type]
                    in_flight += 1
                else:
                    results.append((index, conn.sent_at, time.perf_counter() - conn.started, 0))
                    idle.append(conn)
            timeout = None
            if pending and idle:  # paced: wake when the next one is due
                timeout = max(0.0, start + pending[-1][0] * pace - time.perf_counter())
            if not in_flight:
                time.sleep(timeout or 0.0)
                continue
            for key, _ in selector.select(timeout):
                conn = key.data
                outcome = conn.receive()
                if outcome is not None:
                    selector.unregister(key.fileobj)
                    if outcome[3] == 0 or not conn.keep_alive:
                        conn.close()  # reconnects on its next send
                    in_flight -= 1
                    results.append(outcome)
                    idle.append(conn)
    finally:
        for key in list(selector.get_map().values()):
            key.data.close()
        for conn in idle:
            conn.close()
        selector.close()
    return sorted(results)


def blast_in_process(port: int, requests: list[bytes], senders: int, pace: float = 0.0) -> list[Result]:
    """`blast`, run in a fresh process so it does not share an interpreter lock with the fakes."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(blast, port, requests, senders, pace).result()
