"""Two replicas sharing state in a real redis-server: never a double reboot, never a dropped follow-up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from slack_sdk import WebClient

from bot.core.outbox import Outbox, OutboxMessage
from bot.core.redis_state import RedisBackedStore
from bot.core.store import FollowUp
from bot.slack.delivery import Deliverer
from tests.conftest import INSTANCE_ID, OTHER_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack, Message
from tests.harness import ALICE, BOB, INCIDENTS, Harness, eventually
from tests.processes import BotProcess, bot_env, command_body, confirm_body

ROOT = Path(__file__).resolve().parent.parent


def test_confirmation_lock_and_cooldown_are_shared(tmp_path: Path, redis_url: str) -> None:
    """A confirmation used on one replica is used on the other; a lock taken on one is seen by the other."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url)
    try:
        assert a.confirmation_key() == b.confirmation_key()
        assert a.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        assert not b.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        taken, _ = a.acquire_lock(
            INSTANCE_ID, owner=ALICE, channel=INCIDENTS, thread_ts="1.1", correlation_id="c1", ttl_seconds=60
        )
        assert taken
        refused, held = b.acquire_lock(
            INSTANCE_ID, owner=BOB, channel=INCIDENTS, thread_ts="1.2", correlation_id="c2", ttl_seconds=60
        )
        assert not refused and held.owner == ALICE
        b.release_lock(INSTANCE_ID, "c2")  # not the holder: nothing happens
        assert a.current_lock(INSTANCE_ID) is not None
        a.release_lock(INSTANCE_ID, "c1")
        assert b.current_lock(INSTANCE_ID) is None
        a.record("reboot_result", correlation_id="c1", user_id=ALICE, instance_id=INSTANCE_ID, outcome="accepted")
        last = b.last_reboot(INSTANCE_ID)
        assert last is not None and last.user_id == ALICE and last.outcome == "accepted"
        [shared] = b.audit()
        assert (shared.correlation_id, shared.replica) == ("c1", a.audit_name), "one trail, written by a"
    finally:
        a.close()
        b.close()


def test_a_dead_replicas_follow_up_is_taken_over(tmp_path: Path, redis_url: str) -> None:
    """A follow-up owned by a replica that stops renewing its lease passes to another; the ending is reported once."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url, lease_seconds=0.5, outbox_lease_seconds=0.5)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url, lease_seconds=0.5, outbox_lease_seconds=0.5)
    try:
        now = time.time()
        a.add_followup(FollowUp("c1", INSTANCE_ID, ALICE, ALICE, INCIDENTS, "1.1", now, now + 600))
        assert [f.correlation_id for f in a.active_followups()] == ["c1"]
        assert b.active_followups() == [], "owned by a while its lease is fresh"
        time.sleep(0.7)  # a stops ticking (dies): its lease lapses
        [taken] = b.active_followups()
        assert taken.correlation_id == "c1"
        assert a.active_followups() == [], "b holds it now"
        assert b.finish_followup("c1", "healthy") and not a.finish_followup("c1", "healthy")
        assert a.followup_outcome("c1") == "healthy"
    finally:
        a.close()
        b.close()


def test_whole_flow_with_redis(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str) -> None:
    """Card, confirmation, reboot and follow-up to ACTIVE, with the shared state in Redis."""
    h = Harness(tmp_path, fake_dbss, fake_slack, redis_url=redis_url, bot_poll_interval_seconds=0.05)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        h.click("dbss_reboot_confirm", card=card)
        eventually(
            lambda: any("back to *ACTIVE*" in m.text for m in fake_slack.thread(card.channel, card.ts)),
            what="the follow-up to end",
        )
        assert len(fake_dbss.reboot_requests()) == 1
    finally:
        h.stop()


def test_two_processes_same_click_one_reboot_and_follow_up_survives(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """Two bot processes behind one 'load balancer': the same click delivered to both reboots once; the
    replica following the reboot is killed, and the other one finishes the thread."""
    fake_dbss.reboot_polls = 10_000  # still rebooting when the owner is killed, however slow the start-up was
    shared = {"REDIS_URL": redis_url, "BOT_POLL_INTERVAL_SECONDS": "0.3"}
    a = BotProcess(bot_env(fake_dbss, fake_slack, tmp_path / "a.sqlite3", **shared), tmp_path)
    b = BotProcess(bot_env(fake_dbss, fake_slack, tmp_path / "b.sqlite3", **shared), tmp_path)
    try:
        assert a.post(command_body(fake_slack)).status_code == 200
        eventually(lambda: fake_slack.messages, timeout=10, what="the card")
        card = next(iter(fake_slack.messages.values()))
        click = confirm_body(fake_slack, card)
        results: list[int] = []
        threads = [threading.Thread(target=lambda r=r: results.append(r.post(click).status_code)) for r in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200, 200]
        eventually(lambda: any("DBSS accepted" in m.text for m in fake_slack.thread(INCIDENTS, card.ts)), timeout=10)
        eventually(lambda: any("already answered" in t for t in fake_slack.hook_texts()), timeout=10)
        time.sleep(0.5)
        assert fake_dbss.reboots_done == [INSTANCE_ID], "one click, two replicas, one reboot"

        # Kill the replica that owns the follow-up; the other takes it over once the lease lapses.
        client = redis.Redis.from_url(redis_url)
        owner_key = next(iter(client.scan_iter("dbss-bot:followup-owner:*")))
        owner = client.get(owner_key).decode()  # type: ignore[union-attr]
        client.close()
        victim, survivor = (a, b) if f":{a.worker_pid()}:" in owner else (b, a)
        victim.kill()
        with fake_dbss.lock:
            fake_dbss.instances[INSTANCE_ID].rebooting_polls_left = 2  # done a few polls after the takeover
        done = eventually(
            lambda: [m for m in fake_slack.thread(INCIDENTS, card.ts) if "back to *ACTIVE*" in m.text],
            timeout=30,
            what="the surviving replica to finish the follow-up",
        )
        assert len(done) == 1 and survivor.proc.poll() is None
        assert fake_dbss.reboots_done == [INSTANCE_ID]
    finally:
        a.terminate()
        b.terminate()


def test_a_dead_replicas_pending_messages_are_delivered_by_another(
    tmp_path: Path, fake_slack: FakeSlack, redis_url: str
) -> None:
    """Replica A wrote two messages of a thread and took their delivery lease, then died. B delivers both after
    the lease lapses, in order, once each; while A's lease holds, B leaves the thread alone."""
    from slack_sdk import WebClient

    from bot.core.outbox import Outbox, OutboxMessage
    from bot.slack.delivery import Deliverer
    from tests.fakes.slack import BOT_TOKEN

    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url, lease_seconds=0.5, outbox_lease_seconds=0.5)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url, lease_seconds=0.5, outbox_lease_seconds=0.5)
    said = [
        OutboxMessage(key=f"ref1:{n}", kind="post", channel=INCIDENTS, thread_ts="1700000000.000900", text=text)
        for n, text in enumerate(["first: DBSS accepted", "second: back to ACTIVE"])
    ]
    a.enqueue(said)
    assert [m.key for m in a.outbox_due(time.time(), 10)] == ["ref1:0"]  # A holds the thread's lease, then dies
    assert b.outbox_due(time.time(), 10) == []
    client = WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/", timeout=2, retry_handlers=[])
    deliverer = Deliverer(Outbox(b), client, poll_seconds=0.05)
    deliverer.start()
    try:
        thread = eventually(
            lambda: (
                len(fake_slack.thread(INCIDENTS, "1700000000.000900")) == 2
                and fake_slack.thread(INCIDENTS, "1700000000.000900")
            ),
            what="both messages from B",
        )
        assert [m.text for m in thread] == ["first: DBSS accepted", "second: back to ACTIVE"]
        eventually(lambda: b.outbox_backlog(time.time())[0] == 0, what="both marked sent")
    finally:
        deliverer.stop()
        a.close()
        b.close()


def test_any_replica_honours_any_replicas_card_across_restarts_and_a_lost_key(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """The confirmation key is the deployment's (derived from the signing secret here), not one each process
    makes or reads once: B, started before Redis lost everything, honours the card A posts after its restart."""
    a = Harness(tmp_path / "a", fake_dbss, fake_slack, redis_url=redis_url)
    b = Harness(tmp_path / "b", fake_dbss, fake_slack, redis_url=redis_url)
    try:
        redis.Redis.from_url(redis_url).flushall()
        a.restart()
        a.command(INSTANCE_ID)
        card = a.wait_for_card()
        b.click("dbss_reboot_confirm", card=card)
        eventually(lambda: fake_dbss.reboot_requests(), what="the reboot, confirmed on the other replica")
        assert len(fake_dbss.reboot_requests()) == 1
    finally:
        a.stop()
        b.stop()


def test_two_replicas_with_slow_slack_post_each_message_once(
    tmp_path: Path, fake_slack: FakeSlack, redis_url: str
) -> None:
    """Slack answering each post in 0.6 s (within the 1 s timeout), thread leases of 3 s: 60 due messages, in 60
    threads, delivered by two replicas at once, are 60 posts. A round leases only the threads it sends at once, so
    no lease lapses while its message waits behind others; and a message is read again once its lease is taken,
    so one the other replica has just sent (and let go of) is not sent a second time."""
    fake_slack.delays["chat.postMessage"] = 0.6
    stores = [
        RedisBackedStore.from_url(tmp_path / f"{name}.sqlite3", redis_url, outbox_lease_seconds=3)
        for name in ("a", "b")
    ]
    outboxes = [Outbox(store) for store in stores]
    threads = [f"1600000000.{n:06d}" for n in range(60)]
    with fake_slack.lock:  # the cards whose threads the messages go to
        fake_slack.messages.update({(INCIDENTS, ts): Message(INCIDENTS, ts, "a card", []) for ts in threads})
    outboxes[0].put(
        [OutboxMessage(f"m{n}", "post", INCIDENTS, thread_ts=ts, text=f"message {n}") for n, ts in enumerate(threads)]
    )
    client = WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/", timeout=1, retry_handlers=[])
    deliverers = [Deliverer(outbox, client) for outbox in outboxes]
    try:
        for deliverer in deliverers:
            deliverer.start()
        eventually(lambda: outboxes[0].backlog()[0] == 0, timeout=30, what="every message delivered")
        posts = [m.text for m in fake_slack.messages.values() if m.thread_ts is not None]
        assert sorted(posts) == sorted(f"message {n}" for n in range(60)), "each message posted exactly once"
    finally:
        for deliverer in deliverers:
            deliverer.stop()
        for store in stores:
            store.close()


def test_a_card_from_before_redis_lost_its_data_is_refused_not_rebooted_again(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """A card confirmed once (one reboot); then Redis loses everything (a failover to an empty node, FLUSHALL).
    Replaying the same click, or clicking a card offered before the loss, is refused: the store is not the one
    that issued it (its generation is new). Nothing is rebooted again; a new command gives a card that works."""
    fake_dbss.reboot_polls = 0
    a = Harness(tmp_path / "a", fake_dbss, fake_slack, redis_url=redis_url, bot_poll_interval_seconds=0.05)
    b = Harness(tmp_path / "b", fake_dbss, fake_slack, redis_url=redis_url, bot_poll_interval_seconds=0.05)
    try:
        a.command(INSTANCE_ID)
        card = a.wait_for_card()
        a.click("dbss_reboot_confirm", card=card)
        eventually(lambda: fake_dbss.reboot_requests(), what="the first reboot")
        a.command(OTHER_ID)
        pending = a.wait_for_card()
        redis.Redis.from_url(redis_url).flushall()

        def reset_answers() -> int:
            return sum("state was reset" in t for t in fake_slack.hook_texts())

        b.click("dbss_reboot_confirm", card=card)  # the same click, replayed
        eventually(lambda: reset_answers() == 1, what="the replayed click refused")
        a.click("dbss_reboot_confirm", card=pending)
        eventually(lambda: reset_answers() == 2, what="the card from before the loss refused")
        a.drain()
        b.drain()
        assert len(fake_dbss.reboot_requests()) == 1
        a.command(OTHER_ID)
        fresh = a.wait_for_card(count=2)
        b.click("dbss_reboot_confirm", card=fresh)
        eventually(lambda: len(fake_dbss.reboot_requests()) == 2, what="a reboot from a card offered after the loss")
    finally:
        a.stop()
        b.stop()


def test_a_redis_that_may_forget_is_named_at_start_up(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Eviction on, no persistence (the test server's own settings): opening the store logs both as warnings, each
    with its fix; with noeviction and appendonly on, nothing."""
    from bot.config import Settings
    from bot.core.stores import open_store

    settings = Settings(
        _env_file=None,
        _secrets_dir=None,
        dbss_project_id="0123456789abcdef0123456789abcdef",
        dbss_auth_token="t",
        redis_url=redis_url,
        bot_state_path=str(tmp_path / "a.sqlite3"),
    )
    admin = redis.Redis.from_url(redis_url)
    try:
        admin.config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level("WARNING", logger="bot.core.stores"):
            open_store(settings).close()
        said = [r.getMessage() for r in caplog.records if r.name == "bot.core.stores"]
        assert any("maxmemory-policy is allkeys-lru" in m and "noeviction" in m for m in said), said
        assert any("appendonly" in m for m in said), said
        caplog.clear()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("appendonly", "yes")
        with caplog.at_level("WARNING", logger="bot.core.stores"):
            open_store(settings).close()
        assert [r for r in caplog.records if r.name == "bot.core.stores"] == []
    finally:
        admin.config_set("appendonly", "no")
        admin.close()
