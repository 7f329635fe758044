"""/healthz and /readyz: liveness whatever the state, readiness that fails naming each check that fails (state
store, redis, socket mode, follower, outbox) and recovers when the fault goes, in HTTP mode on PORT and in Socket
Mode on BOT_HEALTH_PORT."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import INSTANCE_ID, RedisServer
from tests.fakes.dbss import FakeDbss
from tests.fakes.http import Answer
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.harness import SIGNING_SECRET, Harness, eventually
from tests.processes import BotProcess, bot_env, free_port
from tests.test_socket_mode import SocketBot, command

READY = (200, "ok\n")
CHECKS = ("state store", "redis", "socket mode", "work", "follower", "outbox")


def readiness(http: httpx.Client) -> tuple[int, str]:
    response = http.get("/readyz")
    return response.status_code, response.text


def failing(http: httpx.Client, name: str) -> str | None:
    """The body of /readyz while it fails naming `name`, each line naming a check."""
    status, text = readiness(http)
    if status != 503:
        return None
    lines = text.splitlines()
    assert lines and all(line.split(":")[0] in CHECKS for line in lines), text
    return text if any(line.startswith(f"{name}: ") for line in lines) else None


def read_only(state: Path, *, on: bool) -> None:
    """Make the state file refuse writes to the table the readiness check writes (as a full disk or a read-only
    mount would refuse every write), from another connection, as another process could."""
    db = sqlite3.connect(state, isolation_level=None)
    try:
        if on:
            for event in ("INSERT", "UPDATE"):
                db.execute(
                    f"CREATE TRIGGER meta_read_only_{event.lower()} BEFORE {event} ON meta "
                    "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END"
                )
        else:
            db.execute("DROP TRIGGER meta_read_only_insert")
            db.execute("DROP TRIGGER meta_read_only_update")
    finally:
        db.close()


@pytest.fixture
def socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as fake:
        fake_slack.socket_mode = fake
        yield fake


@pytest.fixture
def fast(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> Iterator[Harness]:
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05, slack_timeout_seconds=1)
    yield h
    h.stop()


def test_http_mode_serves_liveness_and_readiness_on_port_and_names_a_read_only_state_store(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """`python -m bot http`: /healthz and /readyz say "ok" (HEAD too, without a body), /metrics answers on PORT too;
    with the state file refusing writes, /readyz answers 503 with one line naming the state store and SQLite's
    words, /healthz stays 200; once the file takes writes again, ready again. No secret in any answer."""
    state = tmp_path / "state.sqlite3"
    bot = BotProcess(bot_env(fake_dbss, fake_slack, state), tmp_path)
    try:
        assert (bot.http.get("/healthz").status_code, bot.http.get("/healthz").text) == READY
        eventually(lambda: readiness(bot.http) == READY, what="ready")
        head = bot.http.head("/readyz")
        assert (head.status_code, head.content, head.headers["content-type"]) == (200, b"", "text/plain; charset=utf-8")
        metrics = bot.http.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "dbss_bot_commands_total" in metrics.text and "process_resident_memory_bytes" in metrics.text
        read_only(state, on=True)
        text = eventually(lambda: failing(bot.http, "state store"), what="the state store check to fail")
        assert text.splitlines() == [
            "state store: a test write to the state file failed (IntegrityError: attempt to write a readonly database)"
        ]
        assert bot.http.head("/readyz").status_code == 503
        assert bot.http.get("/healthz").status_code == 200  # alive: a restart would not fix the file
        for secret in (BOT_TOKEN, SIGNING_SECRET, "good-token"):
            assert secret not in text
        read_only(state, on=False)
        eventually(lambda: readiness(bot.http) == READY, what="ready again")
    finally:
        code, _ = bot.terminate()
    assert code == 0


def test_redis_stopped_fails_readiness_naming_it_then_recovers(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_server: RedisServer
) -> None:
    """With REDIS_URL, Redis must answer a test write: stopped, /readyz names `redis` (the error's kind, not its
    text, which names the host); started again on the same port, ready again."""
    h = Harness(tmp_path, fake_dbss, fake_slack, redis_url=redis_server.url)
    try:
        eventually(lambda: readiness(h.http) == READY, what="ready")
        redis_server.stop()
        text = eventually(lambda: failing(h.http, "redis"), timeout=15, what="the redis check to fail")
        assert text.splitlines() == ["redis: a test write failed (ConnectionError)"]
        redis_server.start()
        eventually(lambda: readiness(h.http) == READY, timeout=15, what="ready again")
    finally:
        h.stop()


def test_a_dead_follower_fails_readiness_until_the_bot_restarts(harness: Harness) -> None:
    """The follow-up thread gone: /readyz names the follower; a restart brings it back."""
    eventually(lambda: readiness(harness.http) == READY, what="ready")
    harness.bot.follower.stop()
    assert failing(harness.http, "follower") == "follower: the follow-up thread is not running\n"
    harness.restart()
    eventually(lambda: readiness(harness.http) == READY, what="ready after the restart")


class HangingReads:
    """The follower's state store, whose reads hang until `gate` is set (a disk that stalls)."""

    def __init__(self, store: Any, gate: threading.Event) -> None:
        self._store = store
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def active_followups(self) -> Any:
        self._gate.wait(30)
        return self._store.active_followups()


def test_a_stalled_follower_fails_readiness_then_recovers(fast: Harness, fake_dbss: FakeDbss) -> None:
    """A poll round that does not come back within the threshold (here 0.5 s, while the follower's store reads hang)
    is a stuck follower; when they answer again, rounds come round and it is ready again. A slow DBSS is not a
    stuck follower: the round goes on without the list, and the follow-up's progress says it has no answer yet.
    With nothing to follow, the loop still comes round: readiness does not depend on there being follow-ups."""
    eventually(lambda: readiness(fast.http) == READY, what="ready")
    fast.bot.readiness.follower_stalled_after = 0.5
    fake_dbss.reboot_polls = 10**6  # the instance stays busy: the follow-up goes on polling
    fast.command(INSTANCE_ID)
    card = fast.wait_for_card()
    fast.click("dbss_reboot_confirm", card=card)
    eventually(lambda: fast.bot.follower.active == 1, what="the follow-up")
    fake_dbss.delays["list"] = 1.5
    eventually(
        lambda: any("no answer yet" in m.text for m in fast.slack.thread(card.channel, card.ts)),
        timeout=10,
        what="the progress to say DBSS has not answered",
    )
    assert readiness(fast.http) == READY, "a slow list call does not stall the loop"
    fake_dbss.delays["list"] = 0.0
    gate = threading.Event()
    follower = fast.bot.follower
    store = follower._store
    follower._store = HangingReads(store, gate)
    try:
        text = eventually(lambda: failing(fast.http, "follower"), timeout=10, what="the follower check to fail")
        assert re.fullmatch(r"follower: no poll round for \d+ s \(stuck over 0\.5 s\)\n", text), text
    finally:
        gate.set()
        follower._store = store
    eventually(lambda: readiness(fast.http) == READY, timeout=10, what="ready again")


def hold_a_request_in_dispatch(h: Harness, release: threading.Event) -> threading.Thread:
    """A request that stays in Bolt's dispatch until `release` is set: the acks-first gate holds the work of
    every other request meanwhile (at most its max_wait), as it would in a storm of commands."""

    def next() -> Any:
        release.wait(30)

    thread = threading.Thread(target=h.bot.acks_first.process, kwargs={"req": None, "resp": None, "next": next})
    thread.start()
    return thread


def gauge(http: httpx.Client, name: str) -> float:
    line = next(line for line in http.get("/metrics").text.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[1])


def test_a_held_job_past_its_bound_fails_liveness_and_readiness_then_recovers(harness: Harness) -> None:
    """A card's job held longer than the gate's bound (here 0.3 s; 3 x max_wait by default) is a mute replica:
    /healthz and /readyz answer 503 naming `work`, and the metric shows the held job's age; once it is released
    the card is posted and both are 200 again."""
    eventually(lambda: readiness(harness.http) == READY, what="ready")
    harness.bot.readiness.held_stuck_after = 0.3
    release = threading.Event()
    request = hold_a_request_in_dispatch(harness, release)
    try:
        harness.command(INSTANCE_ID)
        text = eventually(lambda: failing(harness.http, "work"), what="the work check to fail")
        assert re.fullmatch(r"work: a job has been held for \d+ s \(stuck over 0\.3 s\): .*\n", text), text
        health = harness.http.get("/healthz")
        assert (health.status_code, health.text) == (503, text), "a restart cures a held job: liveness fails too"
        assert gauge(harness.http, "dbss_bot_held_job_oldest_age_seconds") > 0.3
    finally:
        release.set()
        request.join()
    harness.wait_for_card()
    eventually(lambda: readiness(harness.http) == READY, what="ready again")
    assert harness.http.get("/healthz").status_code == 200
    assert gauge(harness.http, "dbss_bot_held_job_oldest_age_seconds") == 0.0


def test_a_deliverer_that_does_not_move_fails_liveness_then_recovers(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """A delivery round whose Slack call hangs past the threshold (here 0.5 s; by default two Slack timeouts and
    five polls): /healthz and /readyz name the outbox, and the oldest due message's age shows; when Slack answers
    the deliverer moves again and both are 200."""
    h = Harness(tmp_path, fake_dbss, fake_slack, slack_timeout_seconds=10)
    try:
        eventually(lambda: readiness(h.http) == READY, what="ready")
        h.bot.readiness.deliverer_stalled_after = 0.5
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        fake_slack.delays["chat.update"] = 2.5  # the card's "Calling DBSS" update hangs, within the timeout
        h.click("dbss_reboot_confirm", card=card)
        text = eventually(lambda: failing(h.http, "outbox"), what="the outbox check to fail")
        assert re.fullmatch(r"outbox: the deliverer has not moved for \d+ s \(stuck over 0\.5 s\)\n", text), text
        assert h.http.get("/healthz").status_code == 503
        assert gauge(h.http, "dbss_bot_outbox_oldest_due_age_seconds") > 0.5
        fake_slack.delays["chat.update"] = 0.0
        eventually(lambda: readiness(h.http) == READY, timeout=10, what="ready again")
        assert h.http.get("/healthz").status_code == 200
    finally:
        h.stop()


def test_a_stopped_deliverer_fails_readiness_naming_the_outbox(harness: Harness) -> None:
    """Nothing would reach people: /readyz names the outbox until the bot restarts."""
    eventually(lambda: readiness(harness.http) == READY, what="ready")
    harness.bot.deliverer.stop()
    assert failing(harness.http, "outbox") == "outbox: the deliverer thread is not running\n"
    harness.restart()
    eventually(lambda: readiness(harness.http) == READY, what="ready after the restart")


def test_slack_refusing_messages_for_long_fails_readiness_then_recovers(fast: Harness, fake_slack: FakeSlack) -> None:
    """Slack answering 500 to every post and update: once the oldest undelivered message is older than the threshold
    (here 1 s; 10 minutes by default), /readyz names the outbox with how many wait; when Slack is back they are
    delivered and the bot is ready again."""
    eventually(lambda: readiness(fast.http) == READY, what="ready")
    fast.bot.readiness.outbox_stuck_after = 1.0
    fast.command(INSTANCE_ID)
    card = fast.wait_for_card()
    with fake_slack.lock:
        for method in ("chat.postMessage", "chat.update"):
            fake_slack.scripted[method].extend([Answer(500, {"ok": False, "error": "internal_error"})] * 200)
    fast.click("dbss_reboot_confirm", card=card)
    text = eventually(lambda: failing(fast.http, "outbox"), timeout=15, what="the outbox check to fail")
    assert text.startswith("outbox: ") and "messages undelivered, the oldest for " in text
    with fake_slack.lock:
        fake_slack.scripted.clear()
    eventually(lambda: readiness(fast.http) == READY, timeout=30, what="ready again")
    assert fast.slack.thread(card.channel, card.ts)  # what waited was delivered


def test_socket_mode_serves_health_and_metrics_on_its_own_port_and_names_a_lost_connection(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    """`python -m bot socket`: /healthz, /readyz and /metrics on BOT_HEALTH_PORT (PORT is not served). A dropped
    connection that cannot be replaced at once (apps.connections.open failing twice) fails readiness naming
    `socket mode`; reconnected, ready again. The port closes on SIGTERM, which exits 0."""
    port = free_port()
    env = bot_env(fake_dbss, fake_slack, tmp_path / "state.sqlite3", SLACK_APP_TOKEN=APP_TOKEN, PORT=str(port))
    bot = SocketBot(env, tmp_path, socket_mode)
    http = httpx.Client(base_url=f"http://127.0.0.1:{bot.health_port}", timeout=5)
    try:
        assert (http.get("/healthz").status_code, http.get("/healthz").text) == READY
        eventually(lambda: readiness(http) == READY, what="ready")
        envelope = socket_mode.send_command(command(fake_slack))
        eventually(lambda: socket_mode.ack(envelope), what="the ack")
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'dbss_bot_commands_total{kind="reboot"} 1.0' in metrics.text
        assert 'dbss_bot_ack_duration_seconds_count{request="command"} 1.0' in metrics.text
        fake_slack.fail_next("apps.connections.open", "internal_error")
        fake_slack.fail_next("apps.connections.open", "internal_error")
        socket_mode.drop()
        text = eventually(lambda: failing(http, "socket mode"), timeout=10, what="the socket check to fail")
        assert text == "socket mode: no Socket Mode connection to Slack is open\n"
        eventually(lambda: readiness(http) == READY, timeout=15, what="reconnected")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    finally:
        code, log = bot.terminate()
        http.close()
    assert code == 0, log
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{bot.health_port}/healthz", timeout=1)
