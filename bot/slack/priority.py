"""Acks first: background work waits, for a bounded time, while Slack requests are being acknowledged.

One Python process has one interpreter lock. In a storm, posting cards competes with acknowledging new
commands for it; Slack needs the acknowledgement within 3 s, the card can come a moment later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse


class AcksFirst:
    """Counts requests in dispatch (a Bolt middleware); `yield_to_acks()` waits until none are, or `max_wait`."""

    def __init__(self, *, max_wait: float = 2.0) -> None:
        self._max_wait = max_wait
        self._lock = threading.Lock()
        self._active = 0
        self._idle = threading.Event()
        self._idle.set()

    def middleware(self, next: Callable[[], BoltResponse], **_: Any) -> BoltResponse:
        with self._lock:
            self._active += 1
            self._idle.clear()
        try:
            return next()
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    def yield_to_acks(self) -> None:
        self._idle.wait(self._max_wait)
