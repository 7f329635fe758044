"""The card's buttons: every click checked again, single-use confirmations, and the outcome in the thread."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.request import BoltRequest

from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.http import Answer
from tests.harness import ALICE, BOB, INCIDENTS, MALLORY, RANDOM, Harness, button_value, eventually


def card_for(harness: Harness, instance_id: str = INSTANCE_ID, *, user: str = ALICE, count: int = 1) -> Any:
    harness.command(instance_id, user=user)
    return harness.wait_for_card(count=count)


def card_status(harness: Harness, card: Any) -> str:
    """The last line of the card as it is now in the channel, after chat.update."""
    message = eventually(
        lambda: (m := harness.slack.messages[(card.channel, card.ts)]) and m.history and m, what="the card update"
    )
    assert not any(b["type"] == "actions" for b in message.blocks), "the buttons must be gone"
    return str(message.blocks[-1]["text"]["text"])


def card_lines(harness: Harness, card: Any) -> list[str]:
    """Every line the card has shown under its content, oldest first (each chat.update's last block)."""
    with harness.slack.lock:
        message = harness.slack.messages[(card.channel, card.ts)]
        shown = [*message.history[1:], {"blocks": message.blocks}] if message.history else []
    return [str(version["blocks"][-1]["text"]["text"]) for version in shown]


def test_confirm_reboots_once_and_reports_in_the_thread(harness: Harness) -> None:
    """Confirm: the card loses its buttons ('confirmed by'), DBSS gets one reboot, the thread gets the result."""
    card = card_for(harness)
    response = harness.click("dbss_reboot_confirm", card=card)
    assert response.status_code == 200
    assert card_status(harness, card)
    [reply] = harness.wait_for_thread(card)
    # The card's lines in order. When DBSS answers before "Calling DBSS" has gone out (a busy machine), the outbox
    # folds the two updates of the card into the newest: the card never shows an older state after a newer one.
    lines = eventually(
        lambda: (shown := card_lines(harness, card)) and shown[-1].startswith(":arrows_counterclockwise:") and shown,
        what="the card",
    )
    assert lines[-1].startswith(":arrows_counterclockwise: Rebooting: DBSS accepted")
    assert lines[:-1] in ([], [lines[0]]) and all(
        line.startswith(f":hourglass_flowing_sand: Calling DBSS: confirmed by <@{ALICE}>") for line in lines[:-1]
    )
    [sent] = harness.dbss.reboot_requests()
    assert sent.path == f"/v1/{PROJECT_ID}/audit/instance/reboot" and sent.json == {"instance_id": INSTANCE_ID}
    request_id = [r for r in harness.dbss.received if r is sent]
    assert request_id
    assert "DBSS accepted the reboot" in reply.text and INSTANCE_ID in reply.text
    events = [(e.event, e.outcome) for e in harness.bot.store.audit(instance_id=INSTANCE_ID)]
    assert events[-3:] == [("confirmed", "confirmed"), ("reboot_intent", None), ("reboot_result", "accepted")]
    accepted = harness.bot.store.audit(instance_id=INSTANCE_ID)[-1]
    assert accepted.dbss_request_id and accepted.dbss_request_id in reply.text


def test_cancel_reboots_nothing_and_uses_up_the_card(harness: Harness) -> None:
    """Cancel: 'cancelled by', no DBSS call, and a later Confirm on the same card does nothing."""
    card = card_for(harness)
    harness.click("dbss_reboot_cancel", card=card)
    assert card_status(harness, card).startswith(f":no_entry_sign: Cancelled by <@{ALICE}>")
    harness.click("dbss_reboot_confirm", card=card)
    assert "already answered" in harness.wait_for_hook(count=1)
    assert harness.dbss.reboot_requests() == []


def test_someone_else_cannot_confirm(harness: Harness) -> None:
    """Bob is allow-listed but did not ask: his Confirm is refused privately; Alice's still works afterwards."""
    card = card_for(harness)
    harness.click("dbss_reboot_confirm", card=card, user=BOB)
    assert f"Only the person who asked (<@{ALICE}>)" in harness.wait_for_hook(count=1)
    harness.drain()
    assert harness.dbss.reboot_requests() == []
    harness.click("dbss_reboot_confirm", card=card, user=ALICE)
    eventually(lambda: harness.dbss.reboots_done, what="the reboot")


def test_clicker_off_the_allow_list_is_refused(harness: Harness) -> None:
    """Anyone who can see the card can click it; Mallory is refused and nothing happens."""
    card = card_for(harness)
    for action in ("dbss_reboot_confirm", "dbss_reboot_cancel"):
        harness.click(action, card=card, user=MALLORY)
    assert "allow-list" in harness.wait_for_hook(count=2)
    harness.drain()
    assert harness.dbss.reboot_requests() == []
    assert harness.slack.calls("chat.update") == []


def test_allow_list_is_checked_again_on_click(tmp_path: Any, fake_dbss: Any, fake_slack: Any) -> None:
    """A requester removed from the allow-list between card and click (restart with new settings) is refused."""
    h = Harness(tmp_path, fake_dbss, fake_slack)
    try:
        card = card_for(h)
        h.stop()
        h.settings = h.settings.model_copy(update={"bot_allowed_users": (BOB,)})
        h.start()
        h.click("dbss_reboot_confirm", card=card)
        assert "allow-list" in h.wait_for_hook(count=1)
        h.drain()
        assert h.dbss.reboot_requests() == []
    finally:
        h.stop()


def test_double_click_reboots_once(harness: Harness) -> None:
    """Two Confirm payloads for one card (double click, second tab) cause exactly one DBSS reboot."""
    card = card_for(harness)
    harness.dbss.delays["reboot"] = 0.3
    harness.click("dbss_reboot_confirm", card=card)
    harness.click("dbss_reboot_confirm", card=card)
    eventually(lambda: harness.wait_for_thread(card), what="the outcome")
    assert "already answered" in harness.wait_for_hook(count=1)
    harness.drain()
    assert len(harness.dbss.reboot_requests()) == 1


def test_restart_between_card_and_click(harness: Harness) -> None:
    """A card posted before a restart can be confirmed after it, once; a replay after another restart is refused."""
    card = card_for(harness)
    harness.restart()
    harness.click("dbss_reboot_confirm", card=card)
    harness.wait_for_thread(card)
    harness.restart()
    harness.click("dbss_reboot_confirm", card=card)
    assert "already answered" in harness.wait_for_hook(count=1)
    assert len(harness.dbss.reboot_requests()) == 1


def test_expired_card_is_marked_and_does_nothing(harness: Harness) -> None:
    """A validly signed confirmation past its expiry marks the card 'expired' and reboots nothing."""
    card = card_for(harness)
    _, stale = harness.bot.service._signer.issue(
        instance_id=INSTANCE_ID,
        requester=ALICE,
        channel=INCIDENTS,
        expires_at=int(time.time()) - 1,
        generation=harness.bot.store.generation(),
    )
    harness.click("dbss_reboot_confirm", card=card, value=stale)
    assert card_status(harness, card).startswith(":hourglass: Expired")
    assert "Expired" in harness.wait_for_hook(count=1)
    assert harness.dbss.reboot_requests() == []


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature altered
        lambda v: "x" + v,  # payload altered
        lambda v: INSTANCE_ID,  # a bare ID, as a naive bot would put in the button
        lambda v: "",
        lambda v: "a" * 5000,
    ],
)
def test_forged_or_altered_tokens_are_refused(harness: Harness, tamper: Any) -> None:
    """Anything but the bot's own signed token is refused privately, with no DBSS call."""
    card = card_for(harness)
    harness.click("dbss_reboot_confirm", card=card, value=tamper(button_value(card, "dbss_reboot_confirm")))
    assert "not issued by this bot" in harness.wait_for_hook(count=1)
    harness.drain()
    assert harness.dbss.reboot_requests() == []


def test_token_for_another_channel_is_refused(harness: Harness) -> None:
    """A genuine token replayed from another channel is refused."""
    card = card_for(harness)
    harness.click("dbss_reboot_confirm", card=card, channel=RANDOM)
    assert "another channel" in harness.wait_for_hook(count=1)
    harness.drain()
    assert harness.dbss.reboot_requests() == []


def test_second_request_while_in_flight_is_refused_with_who(harness: Harness) -> None:
    """While Alice's reboot holds the instance, Bob's request is refused naming Alice."""
    card = card_for(harness)
    harness.click("dbss_reboot_confirm", card=card)
    harness.wait_for_thread(card)
    harness.command(INSTANCE_ID, user=BOB)
    text = harness.wait_for_hook(count=1)
    assert "already in flight" in text and f"<@{ALICE}>" in text
    assert len(harness.dbss.reboot_requests()) == 1


def test_two_cards_for_one_instance_only_one_reboots(harness: Harness) -> None:
    """Two cards offered before either is confirmed: the second confirmation finds the lock and does nothing."""
    first = card_for(harness)
    second = card_for(harness, user=BOB, count=2)
    harness.click("dbss_reboot_confirm", card=first)
    harness.wait_for_thread(first)
    harness.click("dbss_reboot_confirm", card=second, user=BOB)
    assert "already in flight" in card_status(harness, second)
    assert len(harness.dbss.reboot_requests()) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("forbidden", ["APIGW.0302", "HTTP 403", "IAM policy"]),
        ("throttled", ["APIGW.0308", "HTTP 429", "throttled"]),
        ("busy", ["DBSS.10020132", "HTTP 400", "Restarting DBSS instance failed.", "Check its state"]),
        ("failed-200", ["HTTP 200", "result", "Check its state"]),
    ],
)
def test_dbss_errors_reach_the_thread_with_facts_and_a_hint(harness: Harness, answer: str, expected: list[str]) -> None:
    """DBSS's code, message, HTTP status, request ID and a one-line hint go into the thread."""
    card = card_for(harness)
    if answer == "forbidden":
        harness.dbss.script("reboot", harness.dbss.gateway_error(403, "APIGW.0302", "The IAM user is not authorized"))
    elif answer == "throttled":
        harness.dbss.script("reboot", harness.dbss.gateway_error(429, "APIGW.0308", "The throttling threshold"))
    elif answer == "busy":
        harness.dbss.script("reboot", harness.dbss.dbss_error(400, "DBSS.10020132", "Restarting DBSS instance failed."))
    else:
        harness.dbss.script("reboot", Answer(200, {"result": "failed"}))
    harness.click("dbss_reboot_confirm", card=card)
    [reply] = harness.wait_for_thread(card)
    for fragment in expected:
        assert fragment in reply.text
    rid = harness.bot.store.audit(instance_id=INSTANCE_ID)[-1].dbss_request_id
    assert rid and f"request ID `{rid}`" in reply.text
    assert len(harness.dbss.reboot_requests()) == 1
    assert harness.bot.store.current_lock(INSTANCE_ID) is None  # a refused reboot frees the instance


def test_timeout_is_outcome_unknown_and_never_retried(harness: Harness) -> None:
    """DBSS received the reboot but did not answer in time: 'outcome unknown', how to check, one request only."""
    card = card_for(harness)
    harness.dbss.delays["reboot"] = 3.0  # the harness's DBSS timeout is 2 s
    harness.click("dbss_reboot_confirm", card=card)
    [reply] = harness.wait_for_thread(card)
    assert "Outcome unknown" in reply.text and "will not retry" in reply.text and "DBSS console" in reply.text
    assert len(harness.dbss.reboot_requests()) == 1
    assert harness.bot.store.audit(instance_id=INSTANCE_ID)[-1].outcome == "unknown"
    lock = harness.bot.store.current_lock(INSTANCE_ID)
    assert lock is not None and lock.owner == ALICE  # kept: nobody should fire again until the state is known


def test_dbss_error_message_is_escaped_in_the_thread(harness: Harness) -> None:
    """An error_msg carrying <!here> and a link cannot ping or link from the thread."""
    card = card_for(harness)
    harness.dbss.script("reboot", harness.dbss.dbss_error(400, "DBSS.1", "<!here> see <https://evil.example|docs>"))
    harness.click("dbss_reboot_confirm", card=card)
    [reply] = harness.wait_for_thread(card)
    assert "<!here>" not in reply.text and "<https://" not in reply.text
    assert "&lt;!here&gt;" in reply.text


def test_outcome_reaches_the_person_when_the_thread_cannot_be_posted(harness: Harness) -> None:
    """The bot removed from the channel after the card: the outcome reaches the requester as a direct message,
    and the audit trail says so."""
    card = card_for(harness)
    harness.slack.not_in_channel.add(INCIDENTS)
    harness.click("dbss_reboot_confirm", card=card)
    [dm] = eventually(lambda: harness.slack.posted(ALICE, "DBSS accepted the reboot"), what="the direct message")
    assert f"<#{INCIDENTS}>" in dm.text and "not_in_channel" in dm.text
    assert harness.bot.store.audit(instance_id=INSTANCE_ID)[-1].outcome == "accepted"
    eventually(
        lambda: [
            e
            for e in harness.bot.store.audit()
            if e.event == "outcome_reported" and e.detail == "privately (direct message)"
        ],
        what="the direct message on record",
    )


def test_audit_trail_is_append_only(harness: Harness) -> None:
    """The audit table refuses updates and deletes."""
    harness.bot.store.record("requested", user_id=ALICE, instance_id=INSTANCE_ID)
    import sqlite3

    db = sqlite3.connect(harness.settings.bot_state_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET outcome = 'x'")
    db.close()


def test_socket_mode_dispatch_runs_the_same_flow(harness: Harness) -> None:
    """Through Bolt's Socket Mode dispatch (no signature), command and click give the same card and reboot."""
    app = harness.bot.app
    command = {
        "command": "/dbss-reboot",
        "text": OTHER_ID,
        "user_id": ALICE,
        "channel_id": INCIDENTS,
        "team_id": "T1",
        "response_url": harness.hook_url(),
        "trigger_id": "1.2.3",
    }
    response = app.dispatch(BoltRequest(body=command, mode="socket_mode"))
    assert response.status == 200
    card = harness.wait_for_card()
    assert OTHER_ID in str(card.blocks)
    payload = harness.click_payload(
        "dbss_reboot_confirm", button_value(card, "dbss_reboot_confirm"), user=ALICE, card=card
    )
    assert app.dispatch(BoltRequest(body=payload, mode="socket_mode")).status == 200
    harness.wait_for_thread(card)
    assert harness.dbss.reboots_done == [OTHER_ID]


def test_click_with_missing_fields_gets_an_answer_not_a_crash(harness: Harness) -> None:
    """A block_actions payload without user or channel is refused cleanly (200, no DBSS call)."""
    payload = {
        "type": "block_actions",
        "actions": [{"action_id": "dbss_reboot_confirm", "value": "x"}],
        "response_url": harness.hook_url(),
        "team": {"id": "T1"},
    }
    response = harness.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status_code == 200
    harness.drain()
    assert harness.dbss.reboot_requests() == []


def test_a_confirmation_is_acted_on_while_a_storm_of_cards_fills_the_work_pool(harness: Harness) -> None:
    """A person is waiting on the click: it does not queue behind the cards of a storm."""
    card = card_for(harness)
    release = threading.Event()
    for _ in range(harness.bot.work._max_workers * 2):
        harness.bot.work.submit(release.wait, 10)
    try:
        assert harness.click("dbss_reboot_confirm", card=card).status_code == 200
        [sent] = eventually(harness.dbss.reboot_requests, timeout=2.0, what="the reboot call")
        assert sent.json == {"instance_id": INSTANCE_ID}
    finally:
        release.set()
    [reply] = harness.wait_for_thread(card)
    assert "DBSS accepted the reboot" in reply.text
