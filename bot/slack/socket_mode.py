"""Socket Mode: Bolt's app served over Slack's WebSocket, with one connection always open or being opened."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.request import SocketModeRequest
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from bot.slack import guard

REDELIVERY_WINDOW_SECONDS = 600.0  # Slack's retries come within minutes (events: ~1 and ~5 minutes)
REDELIVERY_LIMIT = 20_000  # envelopes remembered at most (33 a second for the whole window): about 4 MB

log = logging.getLogger(__name__)


class SocketMode:
    """Serve `app` over Socket Mode, on the `websockets` library's threading client.

    It stands in for Bolt's `SocketModeHandler` because of what slack_sdk's Socket Mode clients do when a
    connection ends (measured with tests/fakes/socket_mode.py, slack_sdk 3.48):

    - the builtin client reads end-of-file as "no data yet": a connection closed without a close frame
      (a network drop) is replaced only when its health check gives up, 53 s later with Bolt's settings,
      a core spinning meanwhile; and after Slack's `disconnect` it starts reading the new connection only
      once a read of the old one times out, so the first ack on it waits 3 s.
    - the websocket-client one closes the old connection before opening the new one, asks
      `apps.connections.open` twice at start-up and on each refresh, and has no ping timeout, so a connection
      that goes silent without closing (a NAT forgetting it) is never replaced.

    Here each connection has its own reader thread, so a new connection is read at once whatever the old
    one does. A connection that ends, cleanly or not, or whose pings go unanswered for `ping_timeout`
    seconds, is replaced at once, with one `apps.connections.open` each. On `disconnect` the new connection
    is opened first, and the old one is still read until it is closed `retire_after` seconds later (time
    for the envelopes it delivered to be acknowledged) if Slack has not closed it by then. Each envelope is
    acknowledged on the connection it came on.
    """

    def __init__(
        self,
        app: App,
        *,
        app_token: str,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        retire_after: float = 3.0,
        workers: int = 10,
    ) -> None:
        self.app = app
        self._token = app_token
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._retire_after = retire_after
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="socket-mode")
        self._lock = threading.Lock()
        self._current: _Link | None = None
        self._links: set[_Link] = set()  # every link not yet closed: the current one, and any retiring
        self._seen = Seen(REDELIVERY_WINDOW_SECONDS, limit=REDELIVERY_LIMIT)
        self._wanted = threading.Event()  # a new connection is needed
        self._closing = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="socket-mode-supervisor", daemon=True)
        self._numbers = itertools.count(1)  # connections are numbered in the logs

    def connect(self) -> None:
        """Open the first connection, raising if Slack refuses (a wrong app token, say); from then on keep
        one open in the background."""
        self._install(self._open())
        self._supervisor.start()

    def connected(self) -> bool:
        """Whether a connection is open right now and Slack has said hello on it: for a readiness check.

        Cheap and thread-safe. False before connect(), after close(), and while no connection is open (a
        drop is replaced within milliseconds, or after a pause while apps.connections.open fails); true
        through a refresh (the old connection serves until the new one has had its hello). A connection
        that went silent without closing counts as open until its ping goes unanswered (10 s by default)."""
        with self._lock:
            links = [*self._links, self._current]
        return not self._closing.is_set() and any(
            link is not None and link.hello.is_set() and link.ws.state is State.OPEN for link in links
        )

    def close(self) -> None:
        """Stop: take no new envelopes, acknowledge those in hand, then close every connection."""
        self._closing.set()
        self._wanted.set()  # wakes the supervisor, which then stops
        self._pool.shutdown(wait=True)
        with self._lock:
            links = list(self._links)
        for link in links:
            link.ws.close()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)

    # --- connections ----------------------------------------------------------------------------------

    def _open(self) -> _Link:
        url = str(self.app.client.apps_connections_open(app_token=self._token)["url"])
        # As a context manager, as websockets asks since 17.1 (before, connect() returned the connection
        # itself, also a context manager); the reader thread leaves it when the connection ends.
        scope = ExitStack()
        ws = scope.enter_context(
            connect(
                url,
                ssl=self.app.client.ssl if url.startswith("wss:") else None,  # None: the default context for wss
                open_timeout=10,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=2,
                max_size=16 * 2**20,  # payloads of big messages and modals; websockets' default is 1 MiB
            )
        )
        link = _Link(next(self._numbers), ws, scope)
        threading.Thread(target=self._read, args=(link,), name="socket-mode-reader", daemon=True).start()
        return link

    def _install(self, link: _Link) -> None:
        """Make `link` the current connection; retire the one it replaces."""
        with self._lock:
            late = self._closing.is_set()
            old = None if late else self._current
            if not late:
                self._current = link
                self._wanted.clear()
                # It died, or Slack asked to move on, before it became current: its reader could not ask.
                if link.ended.is_set() or link.moving.is_set():
                    self._wanted.set()
                else:
                    self._links.add(link)
        if late:  # close() has begun
            link.ws.close()
        elif old is not None and not old.ended.is_set():
            timer = threading.Timer(self._retire_after, old.ws.close)
            timer.daemon = True
            timer.start()

    def _supervise(self) -> None:
        delay = 1.0
        while True:
            self._wanted.wait()
            if self._closing.is_set():
                return
            try:
                link = self._open()
            except Exception as err:  # this thread must live on: every failure is retried, after a pause
                wait = delay
                if isinstance(err, SlackApiError):
                    error = err.response.get("error")
                    if error == "ratelimited":
                        wait = max(delay, float(err.response.headers.get("Retry-After", 30)))
                else:
                    error = f"{type(err).__name__}: {err}"
                expected = isinstance(err, SlackApiError | OSError | WebSocketException)
                log.warning(
                    "could not open a Socket Mode connection",
                    extra={"error": error, "retry_in": wait},
                    exc_info=not expected,
                )
                self._closing.wait(wait)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            self._install(link)

    def _read(self, link: _Link) -> None:
        try:
            for raw in link.ws:
                message = _json_object(raw)
                kind = message.get("type")
                if kind == "hello":
                    link.hello.set()
                    debug = message.get("debug_info")
                    host = debug.get("host") if isinstance(debug, dict) else None
                    log.info("Socket Mode connection ready", extra={"connection": link.number, "slack_host": host})
                elif kind == "disconnect":
                    log.info("Slack asks for a new Socket Mode connection", extra={"reason": message.get("reason")})
                    link.moving.set()
                    self._want_new(link)
                elif (
                    isinstance(message.get("envelope_id"), str)
                    and message["envelope_id"]
                    and not self._closing.is_set()
                ):
                    try:
                        self._pool.submit(self._serve, link, message)
                    except RuntimeError:  # closing: the pool takes no more work
                        return
        except ConnectionClosed as err:
            if not self._closing.is_set():
                log.warning("Socket Mode connection lost", extra={"connection": link.number, "error": str(err)})
        finally:
            link.scope.close()
            link.ended.set()
            with self._lock:
                self._links.discard(link)
            self._want_new(link)

    def _want_new(self, link: _Link) -> None:
        with self._lock:
            if link is self._current and not self._closing.is_set():
                self._wanted.set()

    # --- envelopes ------------------------------------------------------------------------------------

    def _serve(self, link: _Link, message: dict[str, Any]) -> None:
        problem = guard.check_envelope(message)
        if problem is not None:  # acknowledged with nothing done, as a signed but malformed HTTP request is
            log.warning(
                "ignored a malformed Socket Mode envelope: %s", problem, extra={"type": str(message.get("type"))}
            )
            self._ack(link, json.dumps({"envelope_id": message["envelope_id"]}), message.get("type"))
            return
        request = SocketModeRequest.from_dict(message)
        if request is None:
            return
        if not self._seen.first(request.envelope_id):
            # Slack delivered it again (a late ack, a connection that changed) while, or after, it was handled here.
            log.info(
                "acknowledged a redelivered Socket Mode envelope with nothing done",
                extra={"type": request.type, "retry_attempt": request.retry_attempt},
            )
            self._ack(link, json.dumps({"envelope_id": request.envelope_id}), request.type)
            return
        headers: dict[str, str | Sequence[str]] = {}
        if request.retry_attempt is not None:
            headers["x-slack-retry-num"] = str(request.retry_attempt)
        if request.retry_reason:
            headers["x-slack-retry-reason"] = request.retry_reason
        try:
            response = self.app.dispatch(BoltRequest(body=request.payload, mode="socket_mode", headers=headers))
        except BaseException:
            self._seen.forget(request.envelope_id)  # not handled: a redelivery is handled afresh
            raise
        if response.status != 200:  # unhandled: no ack, as Bolt's handlers do; Slack tells the user
            log.info("no ack for a Socket Mode envelope", extra={"status": response.status, "type": request.type})
            self._seen.forget(request.envelope_id)  # not handled: a redelivery is handled afresh
            return
        self._ack(link, json.dumps({"envelope_id": request.envelope_id, **_ack_payload(response)}), request.type)

    def _ack(self, link: _Link, ack: str, kind: object) -> None:
        with self._lock:
            current = self._current
        for via in (link,) if current in (None, link) else (link, current):  # if its own is gone, the current
            try:
                via.ws.send(ack)
                return
            except ConnectionClosed:
                continue
        log.warning("could not acknowledge a Socket Mode envelope: no connection", extra={"type": str(kind)})


class Seen:
    """Keys seen within the last `window` seconds, at most `limit` of them (the oldest go first): bounded memory
    whatever the traffic. Slack redelivers an envelope within minutes, or not at all."""

    def __init__(self, window: float, *, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._at: OrderedDict[str, float] = OrderedDict()

    def first(self, key: str) -> bool:
        """True the first time `key` is seen within the window (and it is remembered); False for a repeat."""
        now = self._clock()
        with self._lock:
            while self._at and (len(self._at) >= self._limit or next(iter(self._at.values())) < now - self._window):
                self._at.popitem(last=False)
            if key in self._at:
                return False
            self._at[key] = now
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            self._at.pop(key, None)

    def __len__(self) -> int:
        return len(self._at)


class _Link:
    """One WebSocket connection to Slack."""

    def __init__(self, number: int, ws: ClientConnection, scope: ExitStack) -> None:
        self.number = number
        self.ws = ws
        self.scope = scope  # leaving it closes the connection
        self.hello = threading.Event()
        self.ended = threading.Event()
        self.moving = threading.Event()  # Slack sent `disconnect`: replace this connection


def _json_object(raw: str | bytes) -> dict[str, Any]:
    """A message from Slack; anything that is not a JSON object reads as empty (and is ignored)."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
        return {}
    return message if isinstance(message, dict) else {}


def _ack_payload(response: BoltResponse) -> dict[str, Any]:
    """What Bolt's ack() put in the HTTP response body, as the envelope ack's payload (as Bolt's adapters do)."""
    if not response.body:
        return {}
    content_type = (response.headers.get("content-type") or [""])[0]
    if content_type.startswith("application/json"):
        return {"payload": json.loads(response.body)}
    return {"payload": {"text": response.body}}
