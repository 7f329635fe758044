"""A fake Slack Socket Mode endpoint: a WebSocket server on loopback that pushes envelopes and records acks.

The flow is Slack's: the bot asks the Web API (`FakeSlack`, `apps.connections.open`) for a URL, which this
fake issues (`ws://127.0.0.1:PORT/link/?ticket=...`, each ticket good for one connection); on connecting,
the bot gets `hello`; the test pushes `slash_commands` and `interactive` envelopes; the bot answers each with
`{"envelope_id": ..., "payload": ...?}`, which is recorded with its arrival time and the connection it came
on. The test can also ask for a refresh (`disconnect` / `refresh_requested`, then the old connection is
closed a few seconds later) or drop a connection abruptly (the TCP connection closed with no close frame).

The server runs in a thread of its own, with its own asyncio loop; every public method is called from the
test's thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass
class Connection:
    """One WebSocket connection as the fake saw it; times are `time.monotonic()`."""

    index: int
    ticket: str
    opened_at: float
    closed_at: float | None = None
    # "client", "refresh" (server close after a disconnect message), "drop" (no close frame), "freeze"
    ended_by: str | None = None
    _ws: ServerConnection | None = field(default=None, repr=False)

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    connection: int
    sent_at: float
    accepts_response_payload: bool = False
    attempts: int = 1


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    connection: int
    at: float


class FakeSocketMode:
    """Slack's Socket Mode server, as far as the bot can tell. Start it, then `fake_slack.socket_mode = it`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self.envelopes: dict[str, Envelope] = {}
        self.acks: dict[str, Ack] = {}
        self.unknown: list[str] = []  # anything received that is not an ack of an envelope we sent
        self.rejected: list[str] = []  # handshakes refused: unknown or reused ticket
        self._tickets: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-socket-mode", daemon=True)
        self._server: Server | None = None
        self._port = 0

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._server = self._run(self._serve())
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            server = self._server

            async def close() -> None:
                for conn in self.connections:  # a frozen connection cannot finish a closing handshake
                    if conn.ended_by == "freeze" and conn._ws is not None:
                        conn._ws.transport.abort()
                server.close()
                await server.wait_closed()

            self._run(close(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what FakeSlack's apps.connections.open answers ----------------------------------------------

    def issue_url(self) -> str:
        ticket = uuid.uuid4().hex
        with self.lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id=A1"

    # --- what tests do --------------------------------------------------------------------------------

    def open_connections(self) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.open]

    def send_command(self, body: dict[str, str], *, connection: int | None = None) -> str:
        """A `slash_commands` envelope; `body` holds the fields of the HTTP form body of a slash command."""
        return self.send("slash_commands", body, accepts_response_payload=True, connection=connection)

    def send_interactive(
        self, payload: dict[str, Any], *, accepts_response_payload: bool = False, connection: int | None = None
    ) -> str:
        """An `interactive` envelope: a block_actions (or shortcut, view) payload."""
        return self.send(
            "interactive", payload, accepts_response_payload=accepts_response_payload, connection=connection
        )

    def send(
        self, type_: str, payload: dict[str, Any], *, accepts_response_payload: bool, connection: int | None = None
    ) -> str:
        return self.send_many([(type_, payload, accepts_response_payload)], connection=connection)[0]

    def send_many(
        self, envelopes: list[tuple[str, dict[str, Any], bool]], *, connection: int | None = None
    ) -> list[str]:
        """Push envelopes back to back on one connection (the newest open one unless told); their IDs."""
        conn = self._pick(connection)
        ids: list[str] = []
        frames: list[str] = []
        for type_, payload, accepts in envelopes:
            envelope_id = str(uuid.uuid4())
            ids.append(envelope_id)
            frames.append(
                json.dumps(
                    {
                        "envelope_id": envelope_id,
                        "type": type_,
                        "accepts_response_payload": accepts,
                        "payload": payload,
                        "retry_attempt": 0,
                        "retry_reason": "",
                    }
                )
            )

        async def push() -> None:
            assert conn._ws is not None
            for envelope_id, frame, (type_, payload, accepts) in zip(ids, frames, envelopes, strict=True):
                with self.lock:
                    self.envelopes[envelope_id] = Envelope(
                        envelope_id, type_, payload, conn.index, time.monotonic(), accepts
                    )
                await conn._ws.send(frame)

        self._run(push())
        return ids

    def redeliver(self, envelope_id: str, *, reason: str = "timeout", connection: int | None = None) -> None:
        """Deliver an envelope again, as Slack does when its ack was late or its connection went away: the same
        envelope ID and payload, with the next `retry_attempt` and a `retry_reason`. Its old ack is forgotten."""
        with self.lock:
            envelope = self.envelopes[envelope_id]
            envelope.attempts += 1
            self.acks.pop(envelope_id, None)
            frame = {
                "envelope_id": envelope_id,
                "type": envelope.type,
                "accepts_response_payload": envelope.accepts_response_payload,
                "payload": envelope.payload,
                "retry_attempt": envelope.attempts - 1,
                "retry_reason": reason,
            }
            envelope.sent_at = time.monotonic()
        self.send_raw(json.dumps(frame), connection=connection)

    def send_raw(self, frame: str, *, connection: int | None = None) -> None:
        """Push one frame as it is, envelope or not (for malformed-input tests)."""
        conn = self._pick(connection)

        async def push() -> None:
            assert conn._ws is not None
            await conn._ws.send(frame)

        self._run(push())

    def ack(self, envelope_id: str) -> Ack | None:
        with self.lock:
            return self.acks.get(envelope_id)

    def ack_delay(self, envelope_id: str) -> float | None:
        """Seconds from pushing the envelope to receiving its ack, or None if not acked (yet)."""
        with self.lock:
            ack, envelope = self.acks.get(envelope_id), self.envelopes.get(envelope_id)
        return None if ack is None or envelope is None else ack.at - envelope.sent_at

    def refresh(self, *, close_after: float = 3.5) -> Connection:
        """Ask the client to reconnect, as Slack does before it retires a server (`disconnect`,
        `refresh_requested`), then close the old connection `close_after` seconds later."""
        conn = self._pick(None)
        message = json.dumps({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake-1"}})

        async def send_then_close() -> None:
            assert conn._ws is not None
            await conn._ws.send(message)
            self._loop.call_later(close_after, lambda: asyncio.ensure_future(self._close(conn, "refresh")))

        self._run(send_then_close())
        return conn

    def drop(self) -> Connection:
        """Drop the newest open connection abruptly: TCP closed with no WebSocket close frame."""
        conn = self._pick(None)

        async def abort() -> None:
            assert conn._ws is not None
            self._closed(conn, "drop")
            conn._ws.transport.abort()

        self._run(abort())
        return conn

    def freeze(self) -> Connection:
        """Make the newest open connection half-open, as a NAT or load balancer that silently forgets it
        does: TCP stays up, but nothing more is read from it, so the client's pings go unanswered."""
        conn = self._pick(None)

        async def pause() -> None:
            assert conn._ws is not None
            self._closed(conn, "freeze")
            if conn._ws.keepalive_task is not None:  # the server's own pings would stop, too
                conn._ws.keepalive_task.cancel()
            conn._ws.transport.pause_reading()

        self._run(pause())
        return conn

    # --- the server -----------------------------------------------------------------------------------

    def _run(self, coro: Any, *, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _serve(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0, process_request=self._check_ticket)

    def _check_ticket(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        ticket = (parse_qs(parts.query).get("ticket") or [""])[0]
        with self.lock:
            if parts.path == "/link/" and ticket in self._tickets:
                self._tickets.discard(ticket)  # one connection per URL: a client must ask for a new one
                return None
            self.rejected.append(request.path)
        return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", Headers(), b"invalid ticket\n")

    async def _handle(self, ws: ServerConnection) -> None:
        ticket = (parse_qs(urlsplit(ws.request.path if ws.request else "").query).get("ticket") or [""])[0]
        with self.lock:
            conn = Connection(len(self.connections) + 1, ticket, time.monotonic(), _ws=ws)
            self.connections.append(conn)
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "fake-1", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": "A1"},
        }
        try:
            await ws.send(json.dumps(hello))
            async for raw in ws:
                self._received(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            self._closed(conn, "client")

    def _received(self, conn: Connection, raw: str | bytes) -> None:
        at = time.monotonic()
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        with self.lock:
            envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
            if isinstance(envelope_id, str) and envelope_id in self.envelopes and envelope_id not in self.acks:
                payload = message.get("payload") if isinstance(message, dict) else None
                self.acks[envelope_id] = Ack(envelope_id, payload, conn.index, at)
            else:
                self.unknown.append(raw if isinstance(raw, str) else raw.decode(errors="replace"))

    async def _close(self, conn: Connection, how: str) -> None:
        if conn._ws is not None and conn.open:
            self._closed(conn, how)
            await conn._ws.close()

    def _closed(self, conn: Connection, how: str) -> None:
        with self.lock:
            if conn.closed_at is None:
                conn.closed_at = time.monotonic()
                conn.ended_by = how

    def _pick(self, index: int | None) -> Connection:
        with self.lock:
            candidates = [c for c in self.connections if c.open and (index is None or c.index == index)]
        if not candidates:
            raise AssertionError(f"no open Socket Mode connection{'' if index is None else f' #{index}'}")
        return candidates[-1]
