"""Liveness, readiness and metrics over HTTP: /healthz, /readyz and /metrics.

HTTP mode serves them on $PORT beside Slack's endpoint (bot/slack/app.py); Socket Mode, which has no HTTP
server of its own, on BOT_HEALTH_PORT (`OpsServer`).

- /healthz: liveness, "restart me only if this fails": 200 while the process serves and none of its own loops
  is stuck; 503 naming each stuck one (`work`: a job held past its bound; `follower`, `outbox`: a thread dead or
  not moving). A restart cures these, and nothing outside the process does: a replica that acks every command
  but posts nothing must not look healthy.
- /readyz: 200 "ok", or 503 with one line per failing check, each starting with its name: `state store`,
  `redis`, `socket mode`, `work`, `follower`, `outbox`. Plain text, no secrets (errors are named by kind).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bot.metrics import Metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# A pending message older than this means delivery is not happening (Slack down, or refusing the bot's token):
# the replica is not ready, since a reboot it confirmed now could not be reported. Retries back off to 60 s, so a
# message that is merely being retried is far younger.
OUTBOX_STUCK_SECONDS = 600.0
# A job held by the acks-first gate is released within its max_wait (2 s): one held several times that is stuck.
HELD_STUCK_FACTOR = 3.0
STORE_CHECK_EVERY_SECONDS = 1.0  # the state-store and Redis checks write; probes more often get the last answer


class Loop(Protocol):
    """A background thread whose rounds a readiness check can watch (the follower, the deliverer)."""

    def alive(self) -> bool: ...


class FollowerLoop(Loop, Protocol):
    last_loop_at: float


class DelivererLoop(Loop, Protocol):
    progress_at: float


class HeldWork(Protocol):
    """The acks-first gate: how long its oldest held job has waited, and how long one may."""

    @property
    def max_wait(self) -> float: ...

    def oldest_held(self) -> float: ...


class Readiness:
    """The readiness checks of one bot; `failures()` names each that fails, with what it saw.

    Thresholds are attributes, so that an operator reading this (or a test) sees them in one place.
    """

    def __init__(
        self,
        *,
        store_write: Callable[[], object],
        redis_write: Callable[[], object] | None,
        follower: FollowerLoop | None,
        follower_stalled_after: float,
        backlog: Callable[[], tuple[int, float]],
        deliverer: DelivererLoop,
        deliverer_stalled_after: float,
        work: HeldWork | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._store = _Probe("state store", "a test write to the state file failed", store_write, clock, detail=True)
        self._redis = _Probe("redis", "a test write failed", redis_write, clock) if redis_write else None
        self._follower = follower
        self._backlog = backlog
        self._deliverer = deliverer
        self._work = work
        # Socket Mode sets it before the first connection: not ready until one is up.
        self.socket_connected: Callable[[], bool] | None = None
        self.follower_stalled_after = follower_stalled_after
        self.outbox_stuck_after = OUTBOX_STUCK_SECONDS
        self.deliverer_stalled_after = deliverer_stalled_after
        self.held_stuck_after = HELD_STUCK_FACTOR * work.max_wait if work is not None else float("inf")

    def failures(self) -> list[str]:
        """One line per failing check, naming it; empty when ready."""
        lines = [self._store()]
        if self._redis is not None:
            lines.append(self._redis())
        if self.socket_connected is not None and not self.socket_connected():
            lines.append("socket mode: no Socket Mode connection to Slack is open")
        lines.append(self._work_failure())
        lines.append(self._follower_failure())
        lines.append(self._outbox_failure())
        return [line for line in lines if line]

    def stuck(self) -> list[str]:
        """The failing checks that a restart cures: the process's own loops, dead or not moving (liveness)."""
        lines = [self._work_failure(), self._follower_failure(), self._deliverer_failure()]
        return [line for line in lines if line]

    def _work_failure(self) -> str | None:
        held = self._work.oldest_held() if self._work is not None else 0.0
        if held > self.held_stuck_after:
            return (
                f"work: a job has been held for {held:.0f} s (stuck over {self.held_stuck_after:g} s): cards and "
                "answers are not being handed to the work threads"
            )
        return None

    def _follower_failure(self) -> str | None:
        follower = self._follower
        if follower is None:
            return None
        if not follower.alive():
            return "follower: the follow-up thread is not running"
        late = self._clock() - follower.last_loop_at
        if late > self.follower_stalled_after:
            return f"follower: no poll round for {late:.0f} s (stuck over {self.follower_stalled_after:g} s)"
        return None

    def _deliverer_failure(self) -> str | None:
        if not self._deliverer.alive():
            return "outbox: the deliverer thread is not running"
        late = self._clock() - self._deliverer.progress_at
        if late > self.deliverer_stalled_after:
            return (
                f"outbox: the deliverer has not moved for {late:.0f} s (stuck over {self.deliverer_stalled_after:g} s)"
            )
        return None

    def _outbox_failure(self) -> str | None:
        stalled = self._deliverer_failure()
        if stalled:
            return stalled
        count, age = self._backlog()
        if count and age > self.outbox_stuck_after:
            return (
                f"outbox: {count} messages undelivered, the oldest for {age:.0f} s (over "
                f"{self.outbox_stuck_after:g} s): Slack is unreachable or refusing the bot; see the logs"
            )
        return None


class _Probe:
    """A check that writes: run at most once per STORE_CHECK_EVERY_SECONDS, and by one caller at a time (the
    others get the last answer rather than wait behind a locked file or a silent Redis).

    `detail`: say SQLite's own words ("database is locked", "attempt to write a readonly database"); Redis's
    errors name hosts, so only their kind is said."""

    def __init__(
        self, name: str, failed: str, write: Callable[[], object], clock: Callable[[], float], *, detail: bool = False
    ) -> None:
        self._detail = detail
        self._name = name
        self._failed = failed
        self._write = write
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: str | None = f"{name}: not checked yet"
        self._at = float("-inf")

    def __call__(self) -> str | None:
        if self._clock() - self._at < STORE_CHECK_EVERY_SECONDS or not self._lock.acquire(blocking=False):
            return self._answer
        try:
            try:
                self._write()
            except Exception as err:
                cause = err.__cause__ or err
                if self._answer is None:
                    log.warning("readiness: %s check failed", self._name, exc_info=True)
                said = f"{type(cause).__name__}: {str(cause)[:120]}" if self._detail else type(cause).__name__
                self._answer = f"{self._name}: {self._failed} ({said})"
            else:
                if self._answer is not None and self._at > float("-inf"):
                    log.info("readiness: %s check passes again", self._name)
                self._answer = None
            self._at = self._clock()
            return self._answer
        finally:
            self._lock.release()


def ops_app(readiness: Readiness | None, metrics: Metrics | None) -> WSGIApplication:
    """GET or HEAD /healthz, /readyz and /metrics; 404 for any other path, 405 for any other method."""

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        status, content_type, body = "404 Not Found", "text/plain; charset=utf-8", b"not found\n"
        if path in PATHS and method not in ("GET", "HEAD"):
            status, body = "405 Method Not Allowed", b"GET or HEAD\n"
        elif path == "/healthz":
            stuck = readiness.stuck() if readiness is not None else []
            status = "503 Service Unavailable" if stuck else "200 OK"
            body = ("".join(f"{line}\n" for line in stuck) if stuck else "ok\n").encode()
        elif path == "/readyz":
            failures = readiness.failures() if readiness is not None else []
            status = "503 Service Unavailable" if failures else "200 OK"
            body = ("".join(f"{line}\n" for line in failures) if failures else "ok\n").encode()
        elif path == "/metrics" and metrics is not None:
            body, content_type = metrics.exposition(environ.get("HTTP_ACCEPT"))
            status = "200 OK"
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        start_response(status, headers)
        return [] if method == "HEAD" else [body]

    return application


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class OpsServer:
    """Socket Mode's small HTTP server for /healthz, /readyz and /metrics, on threads of its own."""

    def __init__(self, app: WSGIApplication, *, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - the kubelet and Prometheus connect from outside the pod
        self._server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
