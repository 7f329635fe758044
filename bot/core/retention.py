"""Retention in the background: what the store keeps past its window is deleted a small batch at a time.

Each batch is one short transaction (SQLite `DELETE ... LIMIT`-style by primary key, PostgreSQL `= ANY(ARRAY(...))`,
Redis `XTRIM MINID` up to a batch's last ID), taken in a quiet moment between requests, so trimming a year of
history never holds the store for long. The windows are the contract's (bot/core/contract.py); the audit trail's
is BOT_AUDIT_RETENTION_DAYS (0 keeps everything; `python -m bot audit` archives it before it goes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Trimmable(Protocol):
    def trim(self, now: float, *, audit_retention_days: int, batch: int = ...) -> int: ...


class Retention:
    """Runs the store's retention every `every` seconds, a batch at a time, until nothing is left to delete."""

    def __init__(
        self,
        store: Trimmable,
        *,
        audit_retention_days: int,
        every: float = 600.0,
        first_after: float = 5.0,
        batch: int = 1000,
        gate: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._days = audit_retention_days
        self._every = every
        self._first_after = first_after
        self._batch = batch
        self._gate = gate
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.deleted = 0

    def run_once(self) -> int:
        """Delete what is past its window, a batch at a time; returns how many rows went."""
        deleted = 0
        while not self._stop.is_set():
            if self._gate is not None:
                self._gate()
            went = self._store.trim(self._clock(), audit_retention_days=self._days, batch=self._batch)
            deleted += went
            if not went:
                break
        self.deleted += deleted
        if deleted:
            log.info("retention: deleted what was past its window", extra={"deleted": deleted})
        return deleted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dbss-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        wait = self._first_after
        while not self._stop.wait(wait):
            try:
                self.run_once()
            except Exception:
                log.warning("retention failed; trying again later", exc_info=True)
            wait = self._every
