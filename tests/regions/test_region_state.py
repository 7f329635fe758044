"""A follow-up's target and an audit entry's region survive the store: SQLite (including a state file made
before targets existed) and Redis (shared between replicas)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import redis

from bot.core.redis_state import RedisBackedStore
from bot.core.store import FollowUp, StateStore

IID = "7e2d1b5f0a3c4b8d9e7f6a5b4c3d2e02"
TARGET = "ap-southeast-1:9c1d00000000000000000000000000b2"


def followup(cid: str, target: str | None = TARGET) -> FollowUp:
    return FollowUp(cid, IID, "UALICE", "UALICE", "CINCIDENT", "1.1", 100.0, 700.0, target=target)


def test_sqlite_keeps_targets_and_regions_and_upgrades_an_old_state_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)  # the tables as the previous version made them, with one follow-up in flight
    old.executescript(
        "CREATE TABLE followups (correlation_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, requester TEXT NOT NULL, "
        "approver TEXT NOT NULL, channel TEXT NOT NULL, thread_ts TEXT NOT NULL, started_at REAL NOT NULL, "
        "deadline REAL NOT NULL, progress_ts TEXT, seen_busy INTEGER NOT NULL DEFAULT 0, polls INTEGER NOT NULL "
        "DEFAULT 0, last_status TEXT, last_task TEXT, last_update_at REAL, done_at REAL, outcome TEXT);"
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, correlation_id TEXT, "
        "event TEXT NOT NULL, user_id TEXT, instance_id TEXT, channel TEXT, thread_ts TEXT, outcome TEXT, "
        "dbss_request_id TEXT, detail TEXT);"
    )
    old.execute(
        "INSERT INTO followups (correlation_id, instance_id, requester, approver, channel, thread_ts, started_at, "
        "deadline) VALUES ('old', ?, 'UALICE', 'UALICE', 'CINCIDENT', '1.0', 1.0, 9e9)",
        (IID,),
    )
    old.execute(
        "INSERT INTO audit (at, event, instance_id, outcome) VALUES (1.0, 'reboot_result', ?, 'accepted')", (IID,)
    )
    old.commit()
    old.close()
    store = StateStore(path)
    try:
        store.add_followup(followup("new"))
        store.record(
            "reboot_result", correlation_id="new", instance_id=IID, outcome="accepted", region="ap-southeast-1"
        )
        assert {f.correlation_id: f.target for f in store.active_followups()} == {"old": None, "new": TARGET}
        assert [e.region for e in store.reboots(instance_id=IID)] == ["ap-southeast-1", None]
    finally:
        store.close()


def test_redis_shares_targets_and_regions_between_replicas(tmp_path: Path, redis_url: str) -> None:
    a = RedisBackedStore(tmp_path / "a.sqlite3", client=redis.Redis.from_url(redis_url), lease_seconds=0.05)
    b = RedisBackedStore(tmp_path / "b.sqlite3", client=redis.Redis.from_url(redis_url), lease_seconds=0.05)
    try:
        a.add_followup(followup("shared"))
        a.record("reboot_result", correlation_id="shared", instance_id=IID, outcome="accepted", region="ap-southeast-1")
        assert [e.region for e in b.reboots(instance_id=IID)] == ["ap-southeast-1"]
        assert b.last_reboot(IID) is not None
        a.close()  # replica a stops; b takes its follow-up over once a's lease lapses
        time.sleep(0.1)
        assert [(f.correlation_id, f.target) for f in b.active_followups()] == [("shared", TARGET)]
    finally:
        b.close()
