"""The store contract (bot/core/contract.py), one suite run against every backend: a SQLite file, a real
redis-server, a real PostgreSQL server, each on loopback. Every primitive, and the failure of each call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.core.contract import FollowUp, StateUnavailable, Store
from bot.core.outbox import OutboxMessage
from tests.conftest import INSTANCE_ID, OTHER_ID
from tests.stores import BACKENDS, Backend

WHERE = {"user_id": "UALICE", "channel": "CINCIDENT", "thread_ts": "1700000000.000100"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with request.param(request, tmp_path) as opened:
        yield opened


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    s = backend.open()
    yield s
    s.close()


def reboot(store: Store, cid: str, *, instance_id: str = INSTANCE_ID, outcome: str | None = "accepted") -> None:
    store.record("reboot_intent", correlation_id=cid, instance_id=instance_id, **WHERE)
    if outcome is not None:
        store.record("reboot_result", correlation_id=cid, instance_id=instance_id, outcome=outcome, **WHERE)


def followup(cid: str, instance_id: str = INSTANCE_ID, started_at: float = 1.0) -> FollowUp:
    return FollowUp(cid, instance_id, "UALICE", "UALICE", "CINCIDENT", "1.1", started_at, started_at + 600)


def test_keys_are_made_once_and_kept(backend: Backend) -> None:
    """The confirmation key and the generation are made on first use and read back the same after a reopen."""
    first = backend.open()
    key, generation = first.confirmation_key(), first.generation()
    assert len(key) == 32 and len(generation) == 32 and first.confirmation_key() == key
    first.close()
    again = backend.open()
    assert again.confirmation_key() == key and again.generation() == generation
    again.heartbeat()
    again.close()


def test_a_confirmation_counts_once(store: Store) -> None:
    assert store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id="UALICE", decision="confirm")
    assert not store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id="UBOB", decision="cancel")
    assert store.claim_confirmation("n2", instance_id=INSTANCE_ID, user_id="UALICE", decision="confirm")


def test_a_lock_is_held_released_by_its_holder_extended_and_taken_over_once_expired(store: Store) -> None:
    taken, lock = store.acquire_lock(
        INSTANCE_ID, owner="UALICE", channel="C1", thread_ts=None, correlation_id="c1", ttl_seconds=60
    )
    assert taken and lock.correlation_id == "c1"
    taken, held = store.acquire_lock(
        INSTANCE_ID, owner="UBOB", channel="C2", thread_ts="1.2", correlation_id="c2", ttl_seconds=60
    )
    assert not taken and (held.owner, held.correlation_id) == ("UALICE", "c1")
    store.release_lock(INSTANCE_ID, "c2")  # not the holder: nothing happens
    current = store.current_lock(INSTANCE_ID)
    assert current is not None and current.correlation_id == "c1"
    store.extend_lock(INSTANCE_ID, "c1", until=time.time() + 120)
    current = store.current_lock(INSTANCE_ID)
    assert current is not None and current.expires_at > time.time() + 100
    store.release_lock(INSTANCE_ID, "c1")
    assert store.current_lock(INSTANCE_ID) is None
    taken, _ = store.acquire_lock(
        OTHER_ID, owner="UALICE", channel="C1", thread_ts=None, correlation_id="c3", ttl_seconds=0.2
    )
    assert taken
    time.sleep(0.4)
    assert store.current_lock(OTHER_ID) is None
    taken, lock = store.acquire_lock(
        OTHER_ID, owner="UBOB", channel="C1", thread_ts=None, correlation_id="c4", ttl_seconds=60
    )
    assert taken and lock.correlation_id == "c4"


def test_the_last_reboot_is_the_latest_accepted_or_unknown_result(store: Store) -> None:
    assert store.last_reboot(INSTANCE_ID) is None
    reboot(store, "c1")
    reboot(store, "c2", outcome="rejected")
    last = store.last_reboot(INSTANCE_ID)
    assert last is not None and (last.correlation_id, last.outcome, last.user_id) == ("c1", "accepted", "UALICE")
    reboot(store, "c3", outcome="unknown")
    reboot(store, "c4", instance_id=OTHER_ID)
    last = store.last_reboot(INSTANCE_ID)
    assert last is not None and last.correlation_id == "c3"
    assert [e.correlation_id for e in store.reboots()] == ["c4", "c3", "c2", "c1"]
    assert [e.correlation_id for e in store.reboots(instance_id=INSTANCE_ID, limit=2)] == ["c3", "c2"]
    assert [e.event for e in store.audit(instance_id=OTHER_ID)] == ["reboot_intent", "reboot_result"]
    assert [e.correlation_id for e in store.entries(instance_id=OTHER_ID)] == ["c4", "c4"]


def test_recovery_finds_what_no_person_was_told(store: Store) -> None:
    """An intent without a result, and a result never reported; not one whose outcome was reported, nor one whose
    outcome message is already written."""
    reboot(store, "dead", outcome=None)
    reboot(store, "unreported")
    reboot(store, "told")
    store.record("outcome_reported", correlation_id="told", outcome="told:outcome", detail="thread")
    reboot(store, "queued")
    store.enqueue([OutboxMessage(key="queued:outcome", kind="post", channel="C1", text="x")])
    found = {e.correlation_id: e.event for e in store.interrupted()}
    assert found == {"dead": "reboot_intent", "unreported": "reboot_result"}


def test_follow_ups_are_added_updated_and_ended_once(store: Store) -> None:
    store.add_followup(followup("f2", started_at=2.0))
    store.add_followup(followup("f1", OTHER_ID, started_at=1.0))
    store.add_followup(replace(followup("f1"), requester="UBOB"))  # written before: kept as it was
    active = store.active_followups()
    assert [(f.correlation_id, f.requester) for f in active] == [("f1", "UALICE"), ("f2", "UALICE")]
    store.update_followups([("f1", {"polls": 3, "seen_busy": True, "last_status": "ACTIVE"})])
    f1 = next(f for f in store.active_followups() if f.correlation_id == "f1")
    assert (f1.polls, f1.seen_busy, f1.last_status) == (3, True, "ACTIVE")
    with pytest.raises(ValueError, match="cannot update"):
        store.update_followups([("f1", {"instance_id": "x"})])
    assert store.finish_followup("f1", "healthy")
    assert not store.finish_followup("f1", "timeout"), "ended once"
    assert [f.correlation_id for f in store.active_followups()] == ["f2"]


def test_the_outbox_keeps_order_keys_and_the_newest_update(store: Store) -> None:
    now = time.time()
    first = OutboxMessage(key="k1", kind="post", channel="C1", thread_ts="1.1", text="one", must_see=True)
    second = OutboxMessage(key="k2", kind="post", channel="C1", thread_ts="1.1", text="two")
    other = OutboxMessage(key="k3", kind="update", channel="C2", target="card", text="old")
    store.enqueue([first, second, other])
    store.enqueue([replace(first, text="again"), replace(other, key="k4", text="new")])
    due = store.outbox_due(now + 1, 10)
    assert [(m.key, m.text) for m in due] == [("k1", "one"), ("k3", "new")], "heads of each thread; newest update"
    assert store.outbox_backlog(now + 1)[0] == 3
    k1 = due[0]
    store.outbox_retry(k1, not_before=now + 60, uncertain=True, detail="429")
    assert [m.key for m in store.outbox_due(now + 1, 10)] == ["k3"], "k1 waits, and k2 behind it"
    for m in store.outbox_due(now + 1, 10):
        store.outbox_release(m)
    again = store.outbox_get("k1")
    assert again is not None and again.uncertain and again.attempts == 1 and again.must_see
    assert store.outbox_done(again, state="sent", ts="1.5", detail=None)
    assert not store.outbox_done(again, state="sent", ts="1.5", detail=None), "marked once"
    assert [m.key for m in store.outbox_due(now + 120, 10)] == ["k2", "k3"]
    stale = store.outbox_get("k3")
    assert stale is not None
    store.enqueue([OutboxMessage(key="k5", kind="update", channel="C2", target="card", text="newer")])
    assert not store.outbox_done(stale, state="sent", ts=None, detail=None), "its content changed meanwhile"
    assert store.outbox_get("nothing") is None


def test_retention_deletes_only_what_is_past_its_window(store: Store) -> None:
    """Claims, delivered messages and audit entries past their windows go, a batch at a time; pending messages,
    the last reboot and active follow-ups stay; 0 days keeps the trail."""
    reboot(store, "c1")
    store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id="UALICE", decision="confirm")
    store.enqueue([OutboxMessage(key="sent", kind="post", channel="C1", text="x")])
    store.enqueue([OutboxMessage(key="waiting", kind="post", channel="C2", text="y")])
    sent = store.outbox_get("sent")
    assert sent is not None and store.outbox_done(sent, state="sent", ts="1.1", detail=None)
    store.add_followup(followup("f1"))
    assert store.trim(time.time(), audit_retention_days=400) == 0, "nothing is old yet"
    later = time.time() + 30 * 86400
    assert store.trim(later, audit_retention_days=0, batch=1) > 0
    while store.trim(later, audit_retention_days=0, batch=1):
        pass
    assert len(store.audit()) == 2, "0 days keeps the trail"
    assert store.outbox_get("waiting") is not None
    if store.backend != "redis":  # Redis lets them expire by themselves: test_redis_state_expires_by_itself
        assert store.outbox_get("sent") is None
    while store.trim(later, audit_retention_days=1, batch=1):
        pass
    assert store.audit() == []
    last = store.last_reboot(INSTANCE_ID)
    assert last is not None and last.correlation_id == "c1"
    assert [f.correlation_id for f in store.active_followups()] == ["f1"]
    size = store.size()
    assert size.audit_entries == 0 and size.pending_outbox == 1


def test_the_size_is_reported(store: Store) -> None:
    reboot(store, "c1")
    store.enqueue([OutboxMessage(key="k", kind="post", channel="C1", text="x")])
    size = store.size()
    assert size.backend == store.backend and size.audit_entries == 2 and size.pending_outbox == 1
    assert size.oldest_entry is not None and abs(size.oldest_entry - time.time()) < 60


CALLS: list[tuple[str, Callable[[Store], Any]]] = [
    ("confirmation_key", lambda s: s.confirmation_key()),
    ("heartbeat", lambda s: s.heartbeat()),
    ("claim", lambda s: s.claim_confirmation("n", instance_id=INSTANCE_ID, user_id="U", decision="confirm")),
    (
        "acquire_lock",
        lambda s: s.acquire_lock(
            INSTANCE_ID, owner="U", channel="C", thread_ts=None, correlation_id="c", ttl_seconds=9
        ),
    ),
    ("current_lock", lambda s: s.current_lock(INSTANCE_ID)),
    ("release_lock", lambda s: s.release_lock(INSTANCE_ID, "c")),
    ("extend_lock", lambda s: s.extend_lock(INSTANCE_ID, "c", until=1.0)),
    ("record", lambda s: s.record("requested", correlation_id="c")),
    ("last_reboot", lambda s: s.last_reboot(INSTANCE_ID)),
    ("reboots", lambda s: s.reboots()),
    ("followup_outcome", lambda s: s.followup_outcome("c")),
    ("interrupted", lambda s: s.interrupted()),
    ("audit", lambda s: s.audit()),
    ("entries", lambda s: list(s.entries())),
    ("add_followup", lambda s: s.add_followup(followup("f"))),
    ("active_followups", lambda s: s.active_followups()),
    ("update_followups", lambda s: s.update_followups([("f", {"polls": 1})])),
    ("finish_followup", lambda s: s.finish_followup("f", "healthy")),
    ("enqueue", lambda s: s.enqueue([OutboxMessage(key="k", kind="post", channel="C", text="x")])),
    ("outbox_due", lambda s: s.outbox_due(time.time(), 10)),
    ("outbox_get", lambda s: s.outbox_get("k")),
    ("outbox_done", lambda s: s.outbox_done(_stub(), state="sent", ts=None, detail=None)),
    ("outbox_retry", lambda s: s.outbox_retry(_stub(), not_before=1.0, uncertain=False, detail="x")),
    ("outbox_backlog", lambda s: s.outbox_backlog(time.time())),
    ("trim", lambda s: s.trim(time.time(), audit_retention_days=1)),
    ("size", lambda s: s.size()),
]


def _stub() -> OutboxMessage:
    return OutboxMessage(key="k", kind="post", channel="C", id=1)


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
def test_each_call_fails_as_state_unavailable(backend: Backend, name: str, call: Callable[[Store], Any]) -> None:
    """With the store broken (the file's connection closed, the server stopped), every call raises
    StateUnavailable: never another error, never a silent success."""
    if (backend.name, name) == ("redis", "heartbeat"):
        pytest.skip("with Redis, heartbeat() writes this replica's file; shared_heartbeat() is Redis' own probe")
    store = backend.open()
    try:
        backend.break_(store)
        with pytest.raises(StateUnavailable):
            call(store)
    finally:
        backend.mend(store)


def test_redis_state_expires_by_itself(backend: Backend) -> None:
    """In Redis, a used confirmation and a message expire with their windows (TTL), and an ended follow-up's
    record is gone at once: nothing but the trail and the last reboots outlives its window."""
    if backend.name != "redis":
        pytest.skip("Redis only")
    import redis

    from bot.core.contract import OUTBOX_SECONDS, USED_CONFIRMATION_SECONDS

    store = backend.open()
    client = redis.Redis.from_url(backend.server.url)  # type: ignore[attr-defined]
    try:
        store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id="UALICE", decision="confirm")
        store.enqueue([OutboxMessage(key="k", kind="post", channel="C1", text="x")])
        store.add_followup(followup("f1"))
        assert store.finish_followup("f1", "healthy")
        assert 0 < client.ttl("dbss-bot:used:n1") <= USED_CONFIRMATION_SECONDS
        assert 0 < client.ttl("dbss-bot:outbox-key:k") <= OUTBOX_SECONDS
        assert not client.exists("dbss-bot:followup:f1")
        assert client.get("dbss-bot:schema") == b"1"
    finally:
        client.close()
        store.close()
