"""Retention in the background: entries past BOT_AUDIT_RETENTION_DAYS go a batch at a time; 0 keeps them."""

from __future__ import annotations

import time
from pathlib import Path

from bot.core.retention import Retention
from bot.core.store import StateStore
from tests.conftest import INSTANCE_ID
from tests.harness import eventually

DAY = 86400.0


def grow(path: Path, *, days_ago: float, count: int) -> None:
    at = [time.time() - days_ago * DAY]
    store = StateStore(path, clock=lambda: at[0])
    for n in range(count):
        store.record("requested", correlation_id=f"c{n}", user_id="UALICE", instance_id=INSTANCE_ID)
    store.close()


def test_entries_past_the_retention_go_in_batches_and_recent_ones_stay(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    grow(path, days_ago=500, count=25)
    grow(path, days_ago=1, count=3)
    store = StateStore(path)
    batches: list[int] = []
    original = store.trim

    def counted(now: float, *, audit_retention_days: int, batch: int = 1000) -> int:
        went = original(now, audit_retention_days=audit_retention_days, batch=batch)
        batches.append(went)
        return went

    store.trim = counted  # type: ignore[method-assign]
    try:
        assert Retention(store, audit_retention_days=0, batch=10).run_once() == 0, "0 days keeps everything"
        assert Retention(store, audit_retention_days=400, batch=10).run_once() == 25
        assert batches[-4:] == [10, 10, 5, 0], "a batch at a time"
        assert len(store.audit()) == 3
    finally:
        store.close()


def test_the_background_thread_trims_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    grow(path, days_ago=500, count=5)
    store = StateStore(path)
    retention = Retention(store, audit_retention_days=400, first_after=0.01, every=0.05)
    retention.start()
    try:
        eventually(lambda: store.audit() == [], what="the old entries to go")
    finally:
        retention.stop()
        store.close()
    assert retention.deleted == 5
