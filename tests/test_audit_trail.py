"""One audit trail for every replica: a Redis Stream on a real redis-server, each replica's SQLite file a copy."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import redis

from bot.core.redis_state import ORPHAN_SECONDS, RedisBackedStore
from bot.core.store import StateStore, StateUnavailable
from tests.conftest import INSTANCE_ID, OTHER_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, BOB, INCIDENTS, Harness, eventually

THREAD = "1700000000.000101"

# What AuditEntry(**fields) accepted before the trail had `replica` and `region`: an older replica reads cooldowns so.
PREVIOUS_VERSION_FIELDS = (
    "at",
    "correlation_id",
    "event",
    "user_id",
    "instance_id",
    "channel",
    "thread_ts",
    "outcome",
    "dbss_request_id",
    "detail",
)


def reboot(store: StateStore, cid: str, *, instance_id: str = INSTANCE_ID, outcome: str | None = "accepted") -> None:
    """The entries of one reboot: the intent, and its result unless `outcome` is None (the replica died)."""
    where = {"user_id": ALICE, "instance_id": instance_id, "channel": INCIDENTS, "thread_ts": THREAD}
    store.record("reboot_intent", correlation_id=cid, **where)
    if outcome is not None:
        store.record("reboot_result", correlation_id=cid, outcome=outcome, dbss_request_id=f"rid-{cid}", **where)


def local_copy(store: RedisBackedStore) -> list[tuple[str, str | None]]:
    """What the replica's own SQLite file holds (StateStore's reading, not the shared one)."""
    return [(e.event, e.correlation_id) for e in StateStore.audit(store)]


def test_an_entry_recorded_on_one_replica_is_read_on_the_other(tmp_path: Path, redis_url: str) -> None:
    """reboots(), last_reboot() and audit() on replica b show what replica a recorded, naming a; the local copy
    of each replica holds what it wrote itself."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url)
    try:
        reboot(a, "c1")
        b.record("refused", correlation_id="c2", user_id=BOB, instance_id=OTHER_ID, outcome="refused")
        reboot(b, "c3", instance_id=OTHER_ID, outcome="rejected")

        assert a.audit_name != b.audit_name
        for replica in (a, b):
            assert [(e.event, e.correlation_id) for e in replica.audit()] == [
                ("reboot_intent", "c1"),
                ("reboot_result", "c1"),
                ("refused", "c2"),
                ("reboot_intent", "c3"),
                ("reboot_result", "c3"),
            ]
            assert [e.correlation_id for e in replica.reboots()] == ["c3", "c1"], "newest first"
            assert [e.correlation_id for e in replica.reboots(instance_id=INSTANCE_ID)] == ["c1"]
            assert [e.correlation_id for e in replica.audit(instance_id=OTHER_ID, limit=2)] == ["c3", "c3"]
            last = replica.last_reboot(INSTANCE_ID)
            assert last is not None and (last.correlation_id, last.user_id) == ("c1", ALICE)
            assert replica.last_reboot(OTHER_ID) is None, "a rejected reboot did not happen"
        [result] = b.reboots(instance_id=INSTANCE_ID)
        assert (result.user_id, result.outcome, result.dbss_request_id, result.thread_ts) == (
            ALICE,
            "accepted",
            "rid-c1",
            THREAD,
        )
        assert result.replica == a.audit_name and abs(result.at - time.time()) < 60

        assert local_copy(a) == [("reboot_intent", "c1"), ("reboot_result", "c1")]
        assert local_copy(b) == [("refused", "c2"), ("reboot_intent", "c3"), ("reboot_result", "c3")]

        client = redis.Redis.from_url(redis_url)
        cooldown = json.loads(client.get("dbss-bot:last-reboot:" + INSTANCE_ID) or "{}")
        assert tuple(cooldown) == PREVIOUS_VERSION_FIELDS, "fields the previous version reads too"
        client.delete("dbss-bot:last-reboot:" + INSTANCE_ID)  # a week later the cooldown key is gone
        client.close()
        last = b.last_reboot(INSTANCE_ID)
        assert last is not None and last.correlation_id == "c1", "status still finds it in the trail"
    finally:
        a.close()
        b.close()


def test_the_audit_name_survives_a_restart_with_the_same_state_file(tmp_path: Path, redis_url: str) -> None:
    """A replica started again on its state file writes under the same name (it recovers its own reboots)."""
    first = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    name, lease_name = first.audit_name, first.replica
    first.close()
    again = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    try:
        assert again.audit_name == name and again.replica != lease_name
    finally:
        again.close()


def test_a_write_redis_refuses_is_written_nowhere_and_its_retry_lands_once(tmp_path: Path, redis_url: str) -> None:
    """Redis refusing writes: record() raises StateUnavailable and neither trail holds the entry; the caller's
    retry, once Redis takes writes again, appends it once to each."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    admin = redis.Redis.from_url(redis_url)
    try:
        admin.config_set("min-replicas-to-write", 1)  # this Redis has no replica: every write is refused
        for _ in range(3):
            with pytest.raises(StateUnavailable):
                a.record("outcome_reported", correlation_id="c1", outcome="c1:outcome", detail="thread")
        assert a.audit() == [] and local_copy(a) == []
        admin.config_set("min-replicas-to-write", 0)
        a.record("outcome_reported", correlation_id="c1", outcome="c1:outcome", detail="thread")
        assert [e.correlation_id for e in a.audit()] == ["c1"]
        assert local_copy(a) == [("outcome_reported", "c1")]
    finally:
        admin.close()
        a.close()


def test_a_local_copy_that_fails_is_logged_and_the_shared_entry_stands(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds a's state file: record() returns once the entry is in the shared trail (so no
    retry appends it twice), and says in the log that a's copy misses it."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    other = sqlite3.connect(tmp_path / "a.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        a.record("outcome_reported", correlation_id="c1", outcome="c1:outcome", detail="thread")
        other.execute("ROLLBACK")
        assert [e.correlation_id for e in a.audit()] == ["c1"] and local_copy(a) == []
        assert "written to the shared trail but not to this replica's copy" in caplog.text
    finally:
        other.close()
        a.close()


def test_only_unsettled_reboots_of_the_replica_or_orphans_look_interrupted(tmp_path: Path, redis_url: str) -> None:
    """b does not report a's reboot whose result a recorded, nor a's reboot still in flight; once a's reboot has
    been in flight far longer than any DBSS call, a is gone and b reports it. Two replicas asking at once: one
    gets it."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    later = time.time() + ORPHAN_SECONDS + 1
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url)
    b_later = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url, clock=lambda: later)
    c_later = RedisBackedStore.from_url(tmp_path / "c.sqlite3", redis_url, clock=lambda: later)
    try:
        reboot(a, "done")
        reboot(a, "in-flight", outcome=None)
        a.record("outcome_reported", correlation_id="done", outcome="done:outcome", detail="thread")
        assert b.interrupted() == [], "a's result is b's too; a's call may still be in flight"

        found: list[list[str | None]] = []
        racers = [
            threading.Thread(target=lambda s=s: found.append([e.correlation_id for e in s.interrupted()]))
            for s in (b_later, c_later)
        ]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        assert sorted(found) == [[], ["in-flight"]], "the orphan is reported by one replica"
    finally:
        for store in (a, b, b_later, c_later):
            store.close()


def ask(h: Harness, text: str) -> str:
    """The private answer to one command (the replicas share the fake Slack's response_urls)."""
    before = len(h.slack.hook_texts())
    h.command(text)
    return h.wait_for_hook(count=before + 1)


def test_history_is_the_same_on_every_replica(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """A reboot confirmed through replica a: `/dbss-reboot history` answers the same lines on a and on b."""
    fake_dbss.reboot_polls = 0
    shared = {"redis_url": redis_url, "bot_poll_interval_seconds": 0.05}
    a = Harness(tmp_path, fake_dbss, fake_slack, bot_state_path=str(tmp_path / "a.sqlite3"), **shared)
    b = Harness(tmp_path, fake_dbss, fake_slack, bot_state_path=str(tmp_path / "b.sqlite3"), **shared)
    try:
        a.command(INSTANCE_ID)
        card = a.wait_for_card()
        a.click("dbss_reboot_confirm", card=card)
        eventually(lambda: (r := b.bot.store.reboots()) and b.bot.store.followup_outcome(r[0].correlation_id or ""))
        on_a = ask(a, "history")
        on_b = ask(b, "history")
        assert on_a == on_b
        assert INSTANCE_ID in on_b and f"<@{ALICE}>" in on_b and "accepted, then healthy" in on_b
        assert ask(b, f"history {INSTANCE_ID}") == ask(a, f"history {INSTANCE_ID}")
    finally:
        a.stop()
        b.stop()


def test_recovery_with_two_replicas_reports_each_interrupted_reboot_once(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """Replica a died during a DBSS call and starts again alongside b; a replica that died long ago never came
    back. Each thread is told "outcome unknown" once, and the shared trail holds one result for each; the next
    starts tell nobody again."""
    long_ago = time.time() - ORPHAN_SECONDS - 60
    gone = RedisBackedStore.from_url(tmp_path / "gone.sqlite3", redis_url, clock=lambda: long_ago)
    reboot(gone, "orphan", instance_id=OTHER_ID, outcome=None)
    gone.close()
    dead = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    reboot(dead, "own", outcome=None)
    dead.close()
    shared = {"redis_url": redis_url, "bot_poll_interval_seconds": 0.05}
    starting: list[Harness] = []
    starts = [
        threading.Thread(
            target=lambda name=name: starting.append(
                Harness(tmp_path, fake_dbss, fake_slack, bot_state_path=str(tmp_path / name), **shared)
            )
        )
        for name in ("a.sqlite3", "b.sqlite3")
    ]
    for t in starts:
        t.start()
    for t in starts:
        t.join()
    try:
        eventually(lambda: len(fake_slack.thread(INCIDENTS, THREAD)) >= 2, timeout=10, what="both reboots told")
        time.sleep(0.5)
        told = fake_slack.thread(INCIDENTS, THREAD)
        assert len(told) == 2 and all("Outcome unknown" in m.text for m in told)
        assert sorted("`orphan`" in m.text for m in told) == [False, True] and any("`own`" in m.text for m in told)
        results = [(e.correlation_id, e.outcome) for e in starting[0].bot.store.audit() if e.event == "reboot_result"]
        assert sorted(results) == [("orphan", "unknown"), ("own", "unknown")]
        for h in starting:
            h.restart()
        time.sleep(0.5)
        assert len(fake_slack.thread(INCIDENTS, THREAD)) == 2, "told once, not again at the next starts"
    finally:
        for h in starting:
            h.stop()
