"""One DBSS instance-list call shared by everyone who needs it at the same moment.

DBSS has no get-one API, so every card and every follow-up reads the whole list. In an incident storm
hundreds of commands arrive within a second; without sharing, each would read (and parse) the list on its
own, and a worker thread would sit waiting on each call. Here a reader that arrives while a call is in
flight gets that call's answer, and nobody holds a thread while waiting: answers arrive as callbacks.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Protocol

from bot.dbss.models import Instance

log = logging.getLogger(__name__)


class Lister(Protocol):
    def list_instances(self) -> list[Instance]: ...


class SharedListing:
    """`fetch()` returns a Future of the instance list: the one in flight, or a new call if none is."""

    def __init__(self, dbss: Lister) -> None:
        self._dbss = dbss
        self._lock = threading.Lock()
        self._in_flight: Future[list[Instance]] | None = None
        self._reader: threading.Thread | None = None
        self._last: tuple[float, list[Instance]] | None = None  # the latest good answer, and when it came
        self.calls = 0

    def fetch(self) -> Future[list[Instance]]:
        with self._lock:
            if self._in_flight is not None:
                return self._in_flight
            future: Future[list[Instance]] = Future()
            self._in_flight = future
            self.calls += 1
        reader = threading.Thread(target=self._read, args=(future,), name="dbss-list", daemon=True)
        self._reader = reader
        reader.start()
        return future

    def recent(self, max_age: float, *, timeout: float) -> list[Instance]:
        """A list no older than `max_age` seconds if there is one, else a fresh call, waited for at most
        `timeout` seconds (type-ahead menus ask on every keystroke: they share one answer for a while)."""
        last = self._last
        if last is not None and time.monotonic() - last[0] <= max_age:
            return last[1]
        return self.fetch().result(timeout=timeout)

    def cached(self, max_age: float) -> list[Instance] | None:
        """The latest good answer if it is no older than `max_age` seconds, else None."""
        last = self._last
        return last[1] if last is not None and time.monotonic() - last[0] <= max_age else None

    def wait_idle(self, timeout: float) -> None:
        """At shutdown: let the call in flight answer, and its callbacks (cards waiting for it) run."""
        reader = self._reader
        if reader is not None:
            reader.join(timeout)

    def list_instances(self) -> list[Instance]:
        """The list, waiting for it (for callers that have a thread of their own to spare)."""
        return self.fetch().result()

    def _read(self, future: Future[list[Instance]]) -> None:
        try:
            result = self._dbss.list_instances()
        except BaseException as err:
            self._settle(future, error=err)
        else:
            self._settle(future, result=result)

    def _settle(
        self,
        future: Future[list[Instance]],
        *,
        result: list[Instance] | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._in_flight = None  # the next reader starts a fresh call: answers are never older than one call
        if error is not None:
            future.set_exception(error)
        else:
            self._last = (time.monotonic(), result or [])
            future.set_result(result or [])
