"""Rebooting from the alert itself (message shortcut), from anywhere (global shortcut and modal), and the
optional reason: each through Bolt's signed request path, with every check of the slash command."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.conftest import INSTANCE_ID, OTHER_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, MALLORY, RANDOM, Harness, eventually

ALERT_TS = "1700000100.000100"


def shortcut(h: Harness, message: dict[str, Any], *, user: str = ALICE, channel: str = INCIDENTS) -> Any:
    payload = {
        "type": "message_action",
        "callback_id": "dbss_reboot_from_message",
        "trigger_id": "1.2.3",
        "response_url": h.hook_url(),
        "team": {"id": "T1"},
        "channel": {"id": channel, "name": "incident"},
        "user": {"id": user},
        "message_ts": message.get("ts", ALERT_TS),
        "message": {"type": "message", "ts": ALERT_TS, "user": "UMONITOR", **message},
    }
    return h.post(urlencode({"payload": json.dumps(payload)}))


def card_in_thread(h: Harness, thread_ts: str = ALERT_TS) -> Any:
    def find() -> Any:
        return next((m for m in h.slack.thread(INCIDENTS, thread_ts) if "asks to *reboot*" in str(m.blocks)), None)

    return eventually(find, what="the card in the alert's thread")


def test_one_instance_in_the_alert_text_gets_a_card_in_its_thread(harness: Harness) -> None:
    """The card is a reply to the alert; confirming it puts the outcome and the follow-up in the same thread."""
    response = shortcut(
        harness, {"text": f":red_circle: DBSS audit instance {INSTANCE_ID} stopped auditing (agent down)"}
    )
    assert response.status_code == 200
    card = card_in_thread(harness)
    assert INSTANCE_ID in str(card.blocks) and f"<@{ALICE}>" in str(card.blocks)
    assert harness.slack.calls("chat.postMessage")[0]["thread_ts"] == ALERT_TS
    harness.click("dbss_reboot_confirm", card=card)
    eventually(
        lambda: any("DBSS accepted" in m.text for m in harness.slack.thread(INCIDENTS, ALERT_TS)), what="outcome"
    )
    assert harness.dbss.reboots_done == [INSTANCE_ID]
    assert harness.bot.store.active_followups()[0].thread_ts == ALERT_TS


def test_ids_in_blocks_and_attachments_and_names_are_found(harness: Harness) -> None:
    """Monitoring puts IDs in blocks or attachments, people write names: all are found."""
    alerts = [
        {
            "text": "see below",
            "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": f"*id*: `{OTHER_ID}`"}]}],
        },
        {"text": "", "attachments": [{"color": "danger", "fields": [{"title": "instance", "value": OTHER_ID}]}]},
        {"text": "audit-prod-2 is flapping again, can someone look"},
    ]
    for n, alert in enumerate(alerts, 1):
        shortcut(harness, alert)
        eventually(
            lambda n=n: (
                len([c for c in harness.slack.calls("chat.postMessage") if OTHER_ID in str(c.get("blocks"))]) >= n
            ),
            what=f"card {n}",
        )


def test_thread_reply_alert_puts_the_card_in_the_parent_thread(harness: Harness) -> None:
    shortcut(harness, {"text": f"still broken: {INSTANCE_ID}", "ts": "1700000200.000200", "thread_ts": ALERT_TS})
    card_in_thread(harness, ALERT_TS)


def test_an_alert_naming_two_instances_asks_which(harness: Harness) -> None:
    """Two instances: a private select of just those; picking one gives the card in the alert's thread."""
    shortcut(harness, {"text": f"both {INSTANCE_ID} and {OTHER_ID} are down"})
    asked = eventually(lambda: [r.json for r in harness.slack.hooks() if r.json.get("blocks")], what="the question")[0]
    assert "names 2 DBSS instances" in asked["text"]
    select = asked["blocks"][1]
    assert select["block_id"] == f"dbss_reboot_picker:{ALERT_TS}"
    assert [o["value"] for o in select["elements"][0]["options"]] == [INSTANCE_ID, OTHER_ID]
    assert harness.slack.calls("chat.postMessage") == []
    pick = {
        "type": "block_actions",
        "user": {"id": ALICE},
        "team": {"id": "T1"},
        "channel": {"id": INCIDENTS},
        "container": {"type": "message", "is_ephemeral": True, "channel_id": INCIDENTS},
        "response_url": harness.hook_url(),
        "actions": [
            {
                "action_id": "dbss_reboot_pick",
                "block_id": select["block_id"],
                "type": "static_select",
                "selected_option": {"value": OTHER_ID},
            }
        ],
    }
    harness.post(urlencode({"payload": json.dumps(pick)}))
    card = card_in_thread(harness)
    assert OTHER_ID in str(card.blocks)


def test_an_alert_naming_none_offers_the_picker(harness: Harness) -> None:
    shortcut(harness, {"text": "disk full on db-7, paging"})
    asked = eventually(lambda: [r.json for r in harness.slack.hooks() if r.json.get("blocks")], what="the picker")[0]
    assert "found no DBSS instance" in asked["text"]
    assert {o["value"] for o in asked["blocks"][1]["elements"][0]["options"]} == {INSTANCE_ID, OTHER_ID}
    assert harness.slack.calls("chat.postMessage") == []


def test_an_alert_naming_an_instance_that_cannot_be_rebooted(harness: Harness) -> None:
    harness.dbss.instances[INSTANCE_ID].status = "SHUTOFF"
    shortcut(harness, {"text": f"{INSTANCE_ID} went quiet"})
    assert "*SHUTOFF*" in harness.wait_for_hook()
    assert harness.slack.calls("chat.postMessage") == []


def test_shortcut_checks_apply_unchanged(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """Users off the allow-list and channels off the channel list are refused privately, with no DBSS call."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_channels=INCIDENTS)
    try:
        shortcut(h, {"text": INSTANCE_ID}, user=MALLORY)
        assert "allow-list" in h.wait_for_hook(count=1)
        shortcut(h, {"text": INSTANCE_ID}, channel=RANDOM)
        assert "not enabled in this channel" in h.wait_for_hook(count=2)
        h.drain()
        assert h.dbss.received == [] and h.slack.calls("chat.postMessage") == []
    finally:
        h.stop()


def test_global_shortcut_opens_the_modal_and_posts_the_card_with_the_reason(harness: Harness) -> None:
    """The modal opens at once, fills with the instances, and a valid submission posts the card (with the reason)."""
    assert global_shortcut(harness, "9.9.9").status_code == 200
    [opened] = eventually(lambda: harness.slack.calls("views.open"), what="the modal to open")
    assert opened["trigger_id"] == "9.9.9"
    eventually(lambda: harness.slack.calls("views.update"), what="the modal to fill in")
    view = harness.slack.views["V1"]
    options = view["blocks"][0]["element"]["options"]
    assert {o["value"] for o in options} == {INSTANCE_ID, OTHER_ID}
    response = submit(harness, INSTANCE_ID, INCIDENTS, "audit agent stuck <!channel>")
    assert response.status_code == 200 and response.text == ""
    card = harness.wait_for_card()
    assert card.channel == INCIDENTS and "*Reason:* audit agent stuck &lt;!channel&gt;" in str(card.blocks)
    requested = [e for e in harness.bot.store.audit() if e.event == "requested"][-1]
    assert requested.detail == "reason: audit agent stuck <!channel>"


def global_shortcut(h: Harness, trigger_id: str) -> Any:
    payload = {
        "type": "shortcut",
        "callback_id": "dbss_reboot_global",
        "trigger_id": trigger_id,
        "team": {"id": "T1"},
        "user": {"id": ALICE},
    }
    return h.post(urlencode({"payload": json.dumps(payload)}))


def submit(h: Harness, instance_id: str, channel: str, reason: str | None, user: str = ALICE) -> Any:
    values = {
        "instance": {"instance": {"type": "static_select", "selected_option": {"value": instance_id}}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": channel}},
        "reason": {"reason": {"type": "plain_text_input", "value": reason}},
    }
    payload = {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": user},
        "api_app_id": "A1",
        "trigger_id": "8.8.8",
        "view": {"id": "V1", "type": "modal", "callback_id": "dbss_reboot_modal", "state": {"values": values}},
    }
    return h.post(urlencode({"payload": json.dumps(payload)}))


def test_modal_refuses_channels_and_people_the_command_would(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """A channel off BOT_ALLOWED_CHANNELS, a user off the allow-list, a forged instance: the modal says so."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_channels=INCIDENTS)
    try:
        body = submit(h, INSTANCE_ID, RANDOM, None).json()
        assert body["response_action"] == "errors" and "not enabled in that channel" in body["errors"]["channel"]
        body = submit(h, INSTANCE_ID, INCIDENTS, None, user=MALLORY).json()
        assert "allow-list" in body["errors"]["instance"]
        body = submit(h, "../../etc", INCIDENTS, None).json()
        assert body["errors"]["instance"] == "Choose an instance from the list."
        h.drain()
        assert h.slack.calls("chat.postMessage") == [] and h.dbss.received == []
    finally:
        h.stop()


def test_slash_command_reason_goes_on_the_card_and_into_the_audit_trail(harness: Harness) -> None:
    assert "Looking up" in harness.command(f"{INSTANCE_ID} reason: audit agent stuck").json()["text"]
    card = harness.wait_for_card()
    assert "*Reason:* audit agent stuck" in str(card.blocks)
    assert [e.detail for e in harness.bot.store.audit() if e.event == "requested"] == ["reason: audit agent stuck"]


def test_reason_rules(harness: Harness) -> None:
    """Free text only after `reason:`, only on a reboot, never empty."""
    assert "Give the reason" in harness.command(f"{INSTANCE_ID} reason:").json()["text"]
    assert "A reason goes with a reboot only" in harness.command("list reason: why").json()["text"]
    assert "exactly one instance ID" in harness.command(f"{INSTANCE_ID} because reason: x").json()["text"]
    assert "keep it under 300" in harness.command(f"{INSTANCE_ID} reason: " + "x" * 400).json()["text"]


def test_global_shortcut_is_acknowledged_without_waiting_for_slack_to_open_the_modal(harness: Harness) -> None:
    """views.open is a Slack round trip: the ack goes first, and the modal still opens (trigger_id lasts 3 s)."""
    harness.slack.delays["views.open"] = 1.5
    started = time.monotonic()
    assert global_shortcut(harness, "7.7.7").status_code == 200
    assert time.monotonic() - started < 1.0
    [opened] = eventually(lambda: harness.slack.calls("views.open"), what="the modal to open")
    assert opened["trigger_id"] == "7.7.7"
    eventually(lambda: harness.slack.calls("views.update"), what="the modal to fill in")


def test_global_shortcut_opens_the_modal_while_the_work_pool_is_busy(harness: Harness) -> None:
    """A storm's cards can fill the work pool for seconds; the modal must still open within trigger_id's 3 s."""
    release = threading.Event()
    for _ in range(harness.bot.work._max_workers * 2):
        harness.bot.work.submit(release.wait, 10)
    try:
        assert global_shortcut(harness, "6.6.6").status_code == 200
        [opened] = eventually(lambda: harness.slack.calls("views.open"), timeout=2.0, what="the modal to open")
        assert opened["trigger_id"] == "6.6.6"
    finally:
        release.set()
    eventually(lambda: harness.slack.calls("views.update"), what="the modal to fill in")
