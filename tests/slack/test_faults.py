"""Injected faults, one test each: the outcome is never lost, never doubled, and the person is told."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bot.core.store import StateStore
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, Harness, eventually
from tests.processes import BotProcess, bot_env, command_body, confirm_body, free_port


def confirmed_card(h: Harness) -> Any:
    h.command(INSTANCE_ID)
    card = h.wait_for_card()
    h.click("dbss_reboot_confirm", card=card)
    return card


def test_dbss_connection_refused(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """DBSS unreachable: the card says the state is unknown; a confirmed reboot is 'not sent', nothing rebooted."""
    h = Harness(tmp_path, fake_dbss, fake_slack, dbss_endpoint=f"http://127.0.0.1:{free_port()}")
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        assert "could not be read" in str(card.blocks) and "DbssNotSent" in str(card.blocks)
        h.click("dbss_reboot_confirm", card=card)
        [reply] = h.wait_for_thread(card)
        assert "was not sent" in reply.text and "Nothing was rebooted" in reply.text
        assert h.bot.store.current_lock(INSTANCE_ID) is None
    finally:
        h.stop()


def test_dbss_resets_the_connection_mid_response(harness: Harness) -> None:
    """The connection drops after DBSS got the reboot: outcome unknown, sent once."""
    harness.dbss.script("reboot", None)
    card = confirmed_card(harness)
    [reply] = harness.wait_for_thread(card)
    assert "Outcome unknown" in reply.text
    assert len(harness.dbss.reboot_requests()) == 1


@pytest.mark.parametrize(("status", "code"), [(500, "DBSS.11000000"), (502, "APIGW.0610"), (503, "APIGW.0613")])
def test_dbss_5xx_is_reported_not_retried(harness: Harness, status: int, code: str) -> None:
    harness.dbss.script("reboot", harness.dbss.gateway_error(status, code, "backend trouble"))
    card = confirmed_card(harness)
    [reply] = harness.wait_for_thread(card)
    assert code in reply.text and f"HTTP {status}" in reply.text and "try again later" in reply.text
    assert len(harness.dbss.reboot_requests()) == 1


@pytest.mark.parametrize("fault", ["refusing", "down"])
def test_iam_refusing_or_down(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, fault: str) -> None:
    """IAM password mode with IAM failing: the card says the state is unknown; the reboot is not sent."""
    h = Harness(
        tmp_path,
        fake_dbss,
        fake_slack,
        dbss_auth_token=None,
        dbss_iam_endpoint=fake_dbss.url,
        dbss_iam_domain="acme",
        dbss_iam_user="oncall-bot",
        dbss_iam_password="correct horse battery staple" if fault == "down" else "wrong",
    )
    try:
        if fault == "down":
            for _ in range(2):
                fake_dbss.script("iam", None)
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        assert "could not be read" in str(card.blocks)
        h.click("dbss_reboot_confirm", card=card)
        [reply] = h.wait_for_thread(card)
        expected = "was not sent" if fault == "down" else "DBSS refused the reboot"
        assert expected in reply.text, reply.text
        assert fake_dbss.reboot_requests() == []
    finally:
        h.stop()


def test_slack_429_retry_after_is_honoured(harness: Harness) -> None:
    """chat.postMessage answering 429 with Retry-After: 1 is sent again after a second, and the card arrives."""
    harness.slack.fail_next("chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "1"})
    harness.command(INSTANCE_ID)
    harness.wait_for_card()
    first, second = harness.slack.requests_to("/api/chat.postMessage")[:2]
    assert second.at - first.at >= 1.0


def test_slack_5xx_while_posting_the_outcome(harness: Harness) -> None:
    """Slack failing (500) when the result is posted: retried, and in the thread exactly once."""
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    harness.slack.fail_next("chat.update", "internal_error", status=500)  # the card update fails too
    harness.slack.fail_next("chat.postMessage", "internal_error", status=500)
    harness.click("dbss_reboot_confirm", card=card)
    eventually(lambda: harness.slack.thread(INCIDENTS, card.ts), what="the outcome", timeout=10)
    events = [(e.event, e.outcome, e.detail) for e in harness.bot.store.audit(instance_id=INSTANCE_ID)]
    assert ("reboot_result", "accepted", None) in events
    eventually(
        lambda: any(e.event == "outcome_reported" and e.detail == "thread" for e in harness.bot.store.audit()),
        what="the delivery on record",
    )
    assert ["DBSS accepted" in m.text for m in harness.slack.thread(INCIDENTS, card.ts)] == [True]
    assert len(harness.dbss.reboot_requests()) == 1


def test_state_store_read_only_refuses_to_reboot(harness: Harness) -> None:
    """If the state store cannot be written, the click is refused: no single-use guarantee, no reboot."""
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    eventually(lambda: any(e.event == "card_posted" for e in harness.bot.store.audit()), what="the card on record")
    harness.bot.store._db.execute("PRAGMA query_only = ON")  # fault injection: every write now fails
    harness.click("dbss_reboot_confirm", card=card)
    assert "state store is unavailable" in harness.wait_for_hook(count=1)
    harness.drain()
    assert harness.dbss.reboot_requests() == []


@pytest.mark.slow  # waits out the state file's real busy timeout (5 s a write)
def test_state_store_locked_refuses_to_reboot(harness: Harness) -> None:
    """Another process holding the state file's write lock: after the busy timeout, refused, no reboot."""
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    eventually(lambda: any(e.event == "card_posted" for e in harness.bot.store.audit()), what="the card on record")
    other = sqlite3.connect(harness.settings.bot_state_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        harness.click("dbss_reboot_confirm", card=card)
        # Each store call meets the 5 s busy timeout; a few of them (the claim, the deliverer's catch-up) can stack.
        text = eventually(lambda: harness.slack.hook_texts() and harness.slack.hook_texts()[0], timeout=30)
        assert "state store is unavailable" in text
    finally:
        other.execute("ROLLBACK")
        other.close()
    harness.drain()
    assert harness.dbss.reboot_requests() == []


def test_sigkill_between_dbss_call_and_thread_reply(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """The bot killed (SIGKILL) while DBSS handles the reboot: on restart the thread is told the outcome is
    unknown and how to check; the reboot is not repeated."""
    state = tmp_path / "state.sqlite3"
    env = bot_env(fake_dbss, fake_slack, state, DBSS_TIMEOUT_SECONDS="30", BOT_POLL_INTERVAL_SECONDS="60")
    fake_dbss.delays["reboot"] = 5.0
    bot = BotProcess(env, tmp_path)
    try:
        bot.post(command_body(fake_slack))
        eventually(lambda: fake_slack.messages, timeout=10, what="the card")
        card = next(iter(fake_slack.messages.values()))
        bot.post(confirm_body(fake_slack, card))
        eventually(lambda: fake_dbss.reboot_requests(), timeout=10, what="the reboot to reach DBSS")
        bot.kill()  # master and worker, mid-call
        assert fake_slack.thread(INCIDENTS, card.ts) == []
        fake_dbss.delays["reboot"] = 0
        bot = BotProcess(env, tmp_path)
        reply = eventually(lambda: fake_slack.thread(INCIDENTS, card.ts), timeout=15, what="the recovery")[0]
        assert "Outcome unknown" in reply.text and "will not retry" in reply.text and "DBSS console" in reply.text
        time.sleep(0.5)
        assert len(fake_dbss.reboot_requests()) == 1
        assert len(fake_slack.thread(INCIDENTS, card.ts)) == 1, "reported once, not on every start"
    finally:
        bot.terminate()
    store = StateStore(state)
    assert [e.outcome for e in store.audit(instance_id=INSTANCE_ID) if e.event == "reboot_result"] == ["unknown"]
    store.close()


def test_recovery_reports_a_recorded_but_unreported_outcome(harness: Harness) -> None:
    """A result recorded whose thread reply never went out (crash right after DBSS answered) is posted on restart."""
    harness.bot.store.record(
        "reboot_intent",
        correlation_id="c1",
        user_id=ALICE,
        instance_id=INSTANCE_ID,
        channel=INCIDENTS,
        thread_ts="1700000000.000777",
    )
    harness.bot.store.record(
        "reboot_result",
        correlation_id="c1",
        user_id=ALICE,
        instance_id=INSTANCE_ID,
        channel=INCIDENTS,
        thread_ts="1700000000.000777",
        outcome="accepted",
        dbss_request_id="rid-77",
    )
    harness.restart()
    [reply] = eventually(lambda: harness.slack.thread(INCIDENTS, "1700000000.000777"), what="the recovery post")
    assert "*accepted*" in reply.text and "rid-77" in reply.text
    harness.restart()
    time.sleep(0.3)
    assert len(harness.slack.thread(INCIDENTS, "1700000000.000777")) == 1


def test_a_card_from_before_the_state_file_was_replaced_is_refused(harness: Harness) -> None:
    """The state file is deleted (or replaced by an empty one) while a card waits: after the restart the card is
    refused, since the new file cannot know whether it was used; nothing is rebooted."""
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    harness.stop()
    state = Path(harness.settings.bot_state_path)
    for leftover in state.parent.glob(state.name + "*"):
        leftover.unlink()
    harness.start()
    harness.click("dbss_reboot_confirm", card=card)
    assert "state was reset" in harness.wait_for_hook(count=1)
    harness.drain()
    assert harness.dbss.reboot_requests() == []
