"""Acks first: background work is held back, for a bounded time, while Slack requests are being acknowledged.

One Python process has one interpreter lock. In a storm, posting cards competes with acknowledging new
commands for it; Slack needs the acknowledgement within 3 s, the card can come a moment later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

log = logging.getLogger(__name__)


class AcksFirst(Middleware):
    """A Bolt middleware that notes every request in dispatch, and a holding area in front of the work pool.

    `submit(job)` holds the job; one releasing thread hands every held job to the pool once no request has
    been in dispatch for `quiet` seconds, or once the oldest has been held `max_wait` seconds.

    - A quiet moment, not "none in dispatch right now": between two requests of a storm there are instants
      with none in dispatch (the server is still reading the next one), and a card job let in at such an
      instant would hold the interpreter lock while the next acks wait.
    - Held here, not in the pool's threads: a pool thread woken for every command, only to wait, would itself
      take the interpreter lock a thousand times a second in a storm.
    - A Middleware subclass, not a function: Bolt calls it directly, without building keyword arguments for
      it on every request.
    """

    def __init__(self, work: Executor, *, quiet: float = 0.02, max_wait: float = 2.0) -> None:
        self._work = work
        self._quiet = quiet
        self._max_wait = max_wait
        self._changed = threading.Condition(threading.Lock())
        self._active = 0
        self._last_done = float("-inf")
        self._held: deque[tuple[float, Callable[[], object]]] = deque()
        self._closed = False
        self._releaser = threading.Thread(target=self._release, name="acks-first", daemon=True)
        self._releaser.start()

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        with self._changed:
            self._active += 1
        try:
            return next()
        finally:
            with self._changed:
                self._active -= 1
                self._last_done = time.monotonic()

    def submit(self, job: Callable[[], object]) -> None:
        """Hold `job` until acks leave room for it, then hand it to the pool."""
        with self._changed:
            if self._closed:
                raise RuntimeError("closed: no new work")
            self._held.append((time.monotonic(), job))
            if len(self._held) == 1:  # the releaser sleeps until there is something to release
                # notify_all: wait_quiet's callers wait on this condition too, and notify() wakes whichever waited
                # first; woken in the releaser's place, the releaser slept on and no later job woke it.
                self._changed.notify_all()

    def wait_quiet(self, max_wait: float) -> None:
        """Block until no request has been in dispatch for `quiet` seconds, or `max_wait` has passed (for other
        background work that should yield to acks too: the outbox's deliverer)."""
        deadline = time.monotonic() + max_wait
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                quiet_at = now + self._quiet if self._active else self._last_done + self._quiet
                if now >= quiet_at or now >= deadline:
                    return
                self._changed.wait(min(quiet_at, deadline) - now)  # nothing notifies here: recheck after

    def close(self) -> None:
        """Hand every held job to the pool now, and take no more (the pool is shut down next)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()  # the releaser, among wait_quiet's callers
        self._releaser.join()

    def _release(self) -> None:
        while True:
            with self._changed:
                while not self._held and not self._closed:
                    self._changed.wait()
                while not self._closed:
                    now = time.monotonic()
                    quiet_at = now + self._quiet if self._active else self._last_done + self._quiet
                    due = min(quiet_at, self._held[0][0] + self._max_wait)
                    if now >= due:
                        break
                    self._changed.wait(due - now)  # nothing notifies here: recheck when the wait is over
                jobs = [job for _, job in self._held]
                self._held.clear()
                closed = self._closed
            for job in jobs:
                try:
                    self._work.submit(job)
                except Exception:  # this thread must survive, or no card would ever be posted again
                    log.exception("could not hand a job to the work pool")
            if closed:
                return
