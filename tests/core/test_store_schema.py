"""The SQLite schema: a file written by main ff24a36 (schema 0) opens, keeps its history and its unfinished
follow-up, and gets the new records and indexes; every query a request or start-up makes is an index search."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from bot.core.store import SCHEMA_VERSION, StateStore, StateUnavailable
from tests.conftest import INSTANCE_ID, OTHER_ID

FIXTURE = Path(__file__).parent.parent / "fixtures" / "state-ff24a36.sqlite3"


def test_a_state_file_of_main_ff24a36_is_migrated_in_place(tmp_path: Path) -> None:
    """History, the last reboots, how each follow-up ended, the unfinished follow-up and the confirmation key
    all survive; the file carries the new version; the audit trail stays append-only."""
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    old = sqlite3.connect(path)
    key = bytes(old.execute("SELECT value FROM meta WHERE key = 'confirm_key'").fetchone()[0])
    trail = old.execute("SELECT event, correlation_id FROM audit ORDER BY id").fetchall()
    assert old.execute("PRAGMA user_version").fetchone()[0] == 0
    old.close()

    store = StateStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert [(e.event, e.correlation_id) for e in store.audit()] == trail, "the history, whole"
        assert store.confirmation_key() == key, "cards made before the upgrade still verify"
        [active] = store.active_followups()
        assert active.instance_id == OTHER_ID and active.requester == "UALICE", "the unfinished follow-up"
        results = store.reboots()
        assert len(results) == 4 and results[0].correlation_id == active.correlation_id
        assert [store.followup_outcome(e.correlation_id or "") for e in results[1:]] == ["healthy"] * 3
        last = store.last_reboot(INSTANCE_ID)
        assert last is not None and last.correlation_id == results[1].correlation_id and last.user_id == "UBOB"
        last_other = store.last_reboot(OTHER_ID)
        assert last_other is not None and last_other.correlation_id == active.correlation_id
        assert store.interrupted() == [], "every outcome of the old file was told"
        assert store.finish_followup(active.correlation_id, "healthy")
    finally:
        store.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"audit_correlation", "audit_results", "audit_at"} <= indexes
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit SET outcome = 'x'")
    finally:
        db.close()
    again = StateStore(path)  # a second start finds nothing to migrate
    assert len(again.audit()) == len(trail)
    again.close()


def test_an_unsettled_reboot_in_an_old_file_is_found_at_start_up(tmp_path: Path) -> None:
    """A schema-0 file whose bot died during a DBSS call: the intent with no result is recovered after the upgrade."""
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO audit (at, correlation_id, event, user_id, instance_id, channel, thread_ts) "
        "VALUES (?, 'died', 'reboot_intent', 'UALICE', ?, 'CINCIDENT', '1.1')",
        (time.time(), INSTANCE_ID),
    )
    db.commit()
    db.close()
    store = StateStore(path)
    try:
        assert [(e.correlation_id, e.event) for e in store.interrupted()] == [("died", "reboot_intent")]
    finally:
        store.close()


def test_a_file_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateUnavailable, match="newer than this bot's"):
        StateStore(path)


QUERIES = {
    "last reboot": ("SELECT * FROM last_reboots WHERE instance_id = ?", (INSTANCE_ID,)),
    "history": (
        "SELECT * FROM audit WHERE event = 'reboot_result' AND instance_id = ? ORDER BY id DESC LIMIT 10",
        (INSTANCE_ID,),
    ),
    "history, all": ("SELECT * FROM audit WHERE event = 'reboot_result' ORDER BY id DESC LIMIT 10", ()),
    "follow-up outcome": (
        "SELECT outcome FROM audit WHERE correlation_id = ? AND event = 'followup_done' ORDER BY id LIMIT 1",
        ("c1",),
    ),
    "audit trim": ("SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT 1000", (1.0,)),
    "recovery's outbox check": ("SELECT 1 FROM outbox WHERE key = ?", ("c1:outcome",)),
}


@pytest.mark.parametrize("name", QUERIES)
def test_every_read_of_the_history_is_an_index_search(tmp_path: Path, name: str) -> None:
    """EXPLAIN QUERY PLAN: a SEARCH with an index, never a SCAN of the trail nor a temporary B-tree to sort it."""
    store = StateStore(tmp_path / "state.sqlite3")
    store.close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    sql, args = QUERIES[name]
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args)]
    db.close()
    assert plan and all(step.startswith("SEARCH") for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
