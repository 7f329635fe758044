"""A Redis written by main ff24a36 (schema 0, keys shaped exactly as that version wrote them) is brought up to
schema 1 at start-up: its unsettled reboots, cooldowns, history and last reboots survive; ended follow-ups go."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from bot.core.redis_state import RedisBackedStore
from tests.conftest import INSTANCE_ID, OTHER_ID
from tests.harness import eventually

WEEK = 7 * 86400


def entry(at: float, cid: str, event: str, instance_id: str, **more: str) -> dict[str, str]:
    fields = {"at": repr(at), "correlation_id": cid, "event": event, "instance_id": instance_id, "replica": "old/abc"}
    return {**fields, **more}


def test_a_redis_of_schema_0_is_migrated(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    old_ms = int((now - 30 * 86400) * 1000)
    # A month-old accepted reboot of OTHER_ID (its week-long cooldown key long gone), then this week's trail.
    trail = [
        (f"{old_ms}-0", entry(now - 30 * 86400, "old1", "reboot_result", OTHER_ID, outcome="accepted")),
        ("*", entry(now - 60, "c1", "reboot_intent", INSTANCE_ID)),
        ("*", entry(now - 59, "c1", "reboot_result", INSTANCE_ID, outcome="accepted")),
        ("*", entry(now - 58, "c1", "outcome_reported", INSTANCE_ID, outcome="c1:outcome")),
        ("*", entry(now - 30, "c2", "reboot_intent", INSTANCE_ID)),  # that replica died during the call
    ]
    for stream_id, fields in trail:
        client.xadd("dbss-bot:audit", fields, id=stream_id)  # type: ignore[arg-type]
    cooldown = {k: v for k, v in trail[2][1].items() if k != "replica"} | {"at": now - 59}
    client.set("dbss-bot:last-reboot:" + INSTANCE_ID, json.dumps(cooldown), ex=WEEK)
    client.set("dbss-bot:followup:c0", json.dumps({"correlation_id": "c0"}))  # ended long ago, never deleted
    client.set("dbss-bot:followup:c1", json.dumps({"correlation_id": "c1"}))
    client.sadd("dbss-bot:followups", "c1")

    store = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    try:
        assert client.get("dbss-bot:schema") == b"1"
        last = store.last_reboot(INSTANCE_ID)
        assert last is not None and last.correlation_id == "c1"
        assert [e.correlation_id for e in store.reboots(instance_id=INSTANCE_ID)] == ["c1"]
        assert not client.exists("dbss-bot:followup:c0") and client.exists("dbss-bot:followup:c1")
        eventually(lambda: store.last_reboot(OTHER_ID), what="the month-old last reboot, found in the background")
        assert client.xlen("dbss-bot:audit") == len(trail), "the trail itself is untouched"
    finally:
        store.close()
    # The dead replica's intent with no result is in the unsettled set (start-up recovery reads only that).
    assert client.hkeys("dbss-bot:v1:unsettled") == [b"c2"]
    raw = json.loads(client.hget("dbss-bot:v1:unsettled", "c2") or b"{}")
    assert raw["event"] == "reboot_intent" and raw["replica"] == "old/abc"
    client.close()
