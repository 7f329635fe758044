"""Two replicas sharing state in a real PostgreSQL server (DATABASE_URL): the replica tests of test_replicas.py,
on the database instead of Redis. Never a double reboot, never a dropped follow-up or message."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.contract import FollowUp
from bot.core.postgres_state import PostgresStore
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, BOB, INCIDENTS, Harness, eventually
from tests.processes import BotProcess, bot_env, command_body, confirm_body
from tests.stores import Postgres, PostgresServer


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[Postgres]:
    db = Postgres(postgres_server)
    yield db
    postgres_server.admin(f"DROP DATABASE {db.database} WITH (FORCE)")


def url(db: Postgres) -> str:
    return f"postgresql://postgres@127.0.0.1:{db.server.port}/{db.database}"


def test_confirmation_lock_and_cooldown_are_shared(database: Postgres) -> None:
    a, b = PostgresStore(database.dsn, name="a"), PostgresStore(database.dsn, name="b")
    try:
        assert a.confirmation_key() == b.confirmation_key() and a.generation() == b.generation()
        assert a.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        assert not b.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        taken, _ = a.acquire_lock(
            INSTANCE_ID, owner=ALICE, channel=INCIDENTS, thread_ts="1.1", correlation_id="c1", ttl_seconds=60
        )
        refused, held = b.acquire_lock(
            INSTANCE_ID, owner=BOB, channel=INCIDENTS, thread_ts="1.2", correlation_id="c2", ttl_seconds=60
        )
        assert taken and not refused and held.owner == ALICE
        a.release_lock(INSTANCE_ID, "c1")
        assert b.current_lock(INSTANCE_ID) is None
        a.record("reboot_result", correlation_id="c1", user_id=ALICE, instance_id=INSTANCE_ID, outcome="accepted")
        last = b.last_reboot(INSTANCE_ID)
        assert last is not None and last.user_id == ALICE and last.replica == "a"
    finally:
        a.close()
        b.close()


def test_claims_race_to_one_winner(database: Postgres) -> None:
    """Eight replicas claim the same confirmation at once: one wins."""
    stores = [PostgresStore(database.dsn, name=f"r{i}") for i in range(8)]
    won: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(store: PostgresStore) -> None:
        barrier.wait()
        won.append(store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm"))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert sorted(won) == [False] * 7 + [True]


def test_a_dead_replicas_follow_up_is_taken_over(database: Postgres) -> None:
    a = PostgresStore(database.dsn, name="a", lease_seconds=0.5)
    b = PostgresStore(database.dsn, name="b", lease_seconds=0.5)
    try:
        now = time.time()
        a.add_followup(FollowUp("c1", INSTANCE_ID, ALICE, ALICE, INCIDENTS, "1.1", now, now + 600))
        assert [f.correlation_id for f in a.active_followups()] == ["c1"]
        assert b.active_followups() == [], "owned by a while its lease is fresh"
        time.sleep(0.7)
        [taken] = b.active_followups()
        assert taken.correlation_id == "c1" and a.active_followups() == []
        assert b.finish_followup("c1", "healthy") and not a.finish_followup("c1", "healthy")
    finally:
        a.close()
        b.close()


def test_recovery_reports_another_replicas_orphan_once(database: Postgres) -> None:
    """A reboot intent of replica a with no result: a finds it at its next start at once, b only once it is
    ORPHAN_SECONDS old; two replicas starting together report it once."""
    from bot.core.contract import ORPHAN_SECONDS

    clock = [time.time()]
    a = PostgresStore(database.dsn, name="a", clock=lambda: clock[0])
    a.record("reboot_intent", correlation_id="c1", user_id=ALICE, instance_id=INSTANCE_ID, channel=INCIDENTS)
    b = PostgresStore(database.dsn, name="b", clock=lambda: clock[0])
    c = PostgresStore(database.dsn, name="c", clock=lambda: clock[0])
    try:
        assert b.interrupted() == []
        clock[0] += ORPHAN_SECONDS + 1
        found = [b.interrupted(), c.interrupted()]
        assert sorted(len(f) for f in found) == [0, 1], "claimed by one of them"
    finally:
        for s in (a, b, c):
            s.close()


def test_whole_flow_with_postgres(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, database: Postgres
) -> None:
    """Card, confirmation, reboot and follow-up to ACTIVE, with the shared state in PostgreSQL."""
    h = Harness(tmp_path, fake_dbss, fake_slack, database_url=url(database), bot_poll_interval_seconds=0.05)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        h.click("dbss_reboot_confirm", card=card)
        eventually(
            lambda: any("back to *ACTIVE*" in m.text for m in fake_slack.thread(card.channel, card.ts)),
            what="the follow-up to end",
        )
        assert len(fake_dbss.reboot_requests()) == 1
        assert h.bot.store.backend == "postgresql"
    finally:
        h.stop()


def test_two_processes_same_click_one_reboot_and_follow_up_survives(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, database: Postgres
) -> None:
    """Two bot processes on one database: the same click delivered to both reboots once; the replica following
    the reboot is killed, and the other one finishes the thread."""
    fake_dbss.reboot_polls = 40
    shared = {"DATABASE_URL": url(database), "BOT_POLL_INTERVAL_SECONDS": "0.3"}
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

        owner = _owner(database)
        victim, survivor = (a, b) if f":{a.worker_pid()}:" in owner else (b, a)
        victim.kill()
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


def _owner(database: Postgres) -> str:
    import psycopg

    def read() -> str | None:
        with psycopg.connect(database.dsn) as conn:
            row = conn.execute("SELECT owner FROM followups WHERE owner IS NOT NULL").fetchone()
        return str(row[0]) if row else None

    return eventually(read, timeout=10, what="a replica to lease the follow-up")


def test_a_dead_replicas_pending_messages_are_delivered_by_another(database: Postgres, fake_slack: FakeSlack) -> None:
    """Replica A leased a thread's head message, then died. B delivers both messages after the lease lapses, in
    order, once each; while A's lease holds, B leaves the thread alone."""
    from slack_sdk import WebClient

    from bot.core.outbox import Outbox, OutboxMessage
    from bot.slack.delivery import Deliverer
    from tests.fakes.slack import BOT_TOKEN

    a = PostgresStore(database.dsn, name="a", outbox_lease_seconds=0.5)
    b = PostgresStore(database.dsn, name="b", outbox_lease_seconds=0.5)
    said = [
        OutboxMessage(key=f"ref1:{n}", kind="post", channel=INCIDENTS, thread_ts="1700000000.000900", text=text)
        for n, text in enumerate(["first: DBSS accepted", "second: back to ACTIVE"])
    ]
    a.enqueue(said)
    assert [m.key for m in a.outbox_due(time.time(), 10)] == ["ref1:0"]
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
