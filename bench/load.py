"""The load generator: pre-signed raw HTTP/1.1 requests on keep-alive sockets, from a process of its own.

A Python HTTP client costs about a millisecond of CPU per request; on two cores shared with the bot and the
fakes, that cost shows up as latency. Raw sockets and requests built before the clock starts keep the
generator's own share small, and a separate process keeps it off the fakes' interpreter lock.
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor


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


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one response (Content-Length or chunked) from a keep-alive socket; return its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in buffer:
                buffer += sock.recv(65536)
            line_end = buffer.index(b"\r\n")
            size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
            while len(buffer) < line_end + 2 + size + 2:
                buffer += sock.recv(65536)
            del buffer[: line_end + 2 + size + 2]
            if size == 0:
                return status
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        buffer += sock.recv(65536)
    del buffer[:length]
    return status


def blast(port: int, requests: list[bytes], senders: int, pace: float = 0.0) -> list[tuple[int, float, float, int]]:
    """Send every request from `senders` threads; (index, sent_at, latency, status) for each.

    pace > 0: request i is not sent before start + i * pace (an arrival rate rather than a closed loop).
    """
    results: list[tuple[int, float, float, int]] = []
    lock = threading.Lock()
    queue = iter(enumerate(requests))
    start = time.perf_counter() + 0.05

    def sender() -> None:
        sock: socket.socket | None = None
        buffer = bytearray()
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                break
            index, request = item
            if pace:
                time.sleep(max(0.0, start + index * pace - time.perf_counter()))
            sent_at = time.time()
            started = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port))
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffer.clear()
                sock.sendall(request)
                status = _read_response(sock, buffer)
            except OSError:
                status = 0
                if sock is not None:
                    sock.close()
                sock = None
            latency = time.perf_counter() - started
            with lock:
                results.append((index, sent_at, latency, status))
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results)


def blast_in_process(
    port: int, requests: list[bytes], senders: int, pace: float = 0.0
) -> list[tuple[int, float, float, int]]:
    """`blast`, run in a fresh process so it does not share an interpreter lock with the fakes."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(blast, port, requests, senders, pace).result()
