"""Every surface answers every input: the modal after it closes, refusals on record, menus at their edges,
names as well as IDs, and quick answers while reboots wait on DBSS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bot.core.confirmation import Confirmation
from bot.core.reboots import Expired
from bot.slack import messages
from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, MALLORY, RANDOM, Harness, eventually
from tests.slack.test_shortcuts import global_shortcut, shortcut, submit


def submit_with_response_url(h: Harness, instance_id: str, channel: str, hook: str | None) -> Any:
    """A view_submission as Slack sends it when the channel select has response_url_enabled."""
    values = {
        "instance": {"instance": {"type": "static_select", "selected_option": {"value": instance_id}}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": channel}},
        "reason": {"reason": {"type": "plain_text_input", "value": None}},
    }
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": ALICE},
        "api_app_id": "A1",
        "view": {"id": "V1", "type": "modal", "callback_id": "dbss_reboot_modal", "state": {"values": values}},
    }
    if hook is not None:
        payload["response_urls"] = [
            {"block_id": "channel", "action_id": "channel", "channel_id": channel, "response_url": hook}
        ]
    return h.post(urlencode({"payload": json.dumps(payload)}))


def test_modal_answers_through_the_channels_response_url(harness: Harness) -> None:
    """After the modal closes, a refusal (not rebootable) reaches the person through the response_url Slack gave
    for the chosen channel, although the bot is not a member there."""
    harness.dbss.instances[INSTANCE_ID].status = "SHUTOFF"
    harness.slack.not_in_channel.add(RANDOM)
    hook = harness.hook_url()
    assert submit_with_response_url(harness, INSTANCE_ID, RANDOM, hook).status_code == 200
    eventually(lambda: [r for r in harness.slack.hooks() if r.path.endswith(hook.rsplit("/", 1)[1])], what="hook")
    [said] = [r.json for r in harness.slack.hooks() if r.path == "/hooks/" + hook.rsplit("/", 1)[1]]
    assert "SHUTOFF" in said["text"] and said["response_type"] == "ephemeral"
    assert harness.slack.calls("chat.postEphemeral") == []


def test_modal_without_response_url_answers_by_direct_message(harness: Harness) -> None:
    """No response_url (or Slack refusing it): the answer comes as a direct message from the bot."""
    harness.dbss.instances[INSTANCE_ID].status = "SHUTOFF"
    submit_with_response_url(harness, INSTANCE_ID, RANDOM, None)
    [dm] = eventually(lambda: harness.slack.posted(ALICE, "SHUTOFF"), what="the direct message")
    assert "SHUTOFF" in dm.text


def test_modal_knows_the_modal_form_is_correct() -> None:
    """The channel select asks Slack for a response_url; an empty list says so instead of an empty menu."""
    blocks = messages.modal([])["blocks"]
    assert "No DBSS audit instances are visible" in json.dumps(blocks)
    assert "submit" not in messages.modal([])
    from bot.dbss.models import Instance

    one = [Instance(id=INSTANCE_ID, name="a", status="ACTIVE", task="NO_TASK")]
    channel = next(b for b in messages.modal(one)["blocks"] if b.get("block_id") == "channel")
    assert channel["element"]["response_url_enabled"] is True


def test_every_surfaces_refusals_are_on_record(harness: Harness) -> None:
    """Message shortcut, global shortcut, modal and picker: each refusal writes an audit entry (4 refusals, 4 rows)."""
    shortcut(harness, {"text": INSTANCE_ID}, user=MALLORY)
    global_shortcut_as(harness, MALLORY)
    submit(harness, INSTANCE_ID, INCIDENTS, None, user=MALLORY)
    pick = {
        "type": "block_actions",
        "user": {"id": ALICE},
        "team": {"id": "T1"},
        "channel": {"id": INCIDENTS},
        "response_url": harness.hook_url(),
        "actions": [{"action_id": "dbss_reboot_pick", "selected_option": {"value": "../../etc"}}],
    }
    harness.post(urlencode({"payload": json.dumps(pick)}))

    def refused() -> list[Any]:
        return [e for e in harness.bot.store.audit() if e.event == "refused"]

    refusals = eventually(lambda: len(refused()) >= 4 and refused(), what="four refusals on record")
    details = " | ".join(str(e.detail) for e in refusals)
    assert "message shortcut" in details and "global shortcut" in details and "modal" in details
    assert "not an instance ID" in details
    assert harness.dbss.reboot_requests() == []


def global_shortcut_as(h: Harness, user: str) -> Any:
    payload = {
        "type": "shortcut",
        "callback_id": "dbss_reboot_global",
        "trigger_id": "9.9.9",
        "team": {"id": "T1"},
        "user": {"id": user},
    }
    return h.post(urlencode({"payload": json.dumps(payload)}))


def test_several_instances_and_dbss_down_says_so(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """An alert naming two instances while DBSS is unreachable: no silent question without a menu; it says DBSS
    cannot be read, names both IDs, and how to go on."""
    from tests.processes import free_port

    h = Harness(tmp_path, fake_dbss, fake_slack, dbss_endpoint=f"http://127.0.0.1:{free_port()}")
    try:
        shortcut(h, {"text": f"{INSTANCE_ID} and {OTHER_ID} both down"})
        text = h.wait_for_hook()
        assert "could not be reached" in text and INSTANCE_ID in text and OTHER_ID in text
        assert "cannot offer a menu" in text and "/dbss-reboot" in text
    finally:
        h.stop()


def test_long_lists_get_a_type_ahead_menu(harness: Harness) -> None:
    """More than 100 instances: the picker is an external select, and an options request (signed, through Bolt)
    answers the instances whose name or ID matches what was typed."""
    for n in range(150):
        harness.dbss.add_instance(f"{n:032x}", f"audit-extra-{n:03d}")
    harness.command("")
    hook = eventually(lambda: harness.slack.hooks(), what="the picker")[0].json
    [select] = [e for b in hook["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert select["type"] == "external_select" and "options" not in select
    suggestion = {
        "type": "block_suggestion",
        "user": {"id": ALICE},
        "team": {"id": "T1"},
        "action_id": "dbss_reboot_pick",
        "block_id": "dbss_reboot_picker",
        "value": "extra-14",
    }
    answer = harness.post(urlencode({"payload": json.dumps(suggestion)})).json()
    names = [o["text"]["text"].split(" · ")[0] for o in answer["options"]]
    assert names == [f"audit-extra-{n}" for n in range(140, 150)]
    outsider = harness.post(urlencode({"payload": json.dumps({**suggestion, "user": {"id": MALLORY}})})).json()
    assert outsider["options"] == []


def test_no_instances_says_so_in_the_picker_and_the_modal(harness: Harness) -> None:
    """Zero instances: the picker and the modal say there are none (Slack rejects an empty select)."""
    harness.dbss.instances.clear()
    harness.command("")
    assert "No DBSS audit instances are visible" in harness.wait_for_hook()
    global_shortcut(harness, "7.7.7")
    eventually(lambda: harness.slack.calls("views.update"), what="the modal filled in")
    assert "No DBSS audit instances are visible" in json.dumps(harness.slack.views["V1"])


def test_a_name_works_when_it_names_one_instance(harness: Harness) -> None:
    """`/dbss-reboot audit-prod-1`: the card for the one instance of that name, showing the ID it resolved to."""
    response = harness.command("audit-prod-1").json()
    assert response["text"] == ":mag: Looking up `audit-prod-1`…"
    card = harness.wait_for_card()
    assert INSTANCE_ID in json.dumps(card.blocks) and "audit-prod-1" in json.dumps(card.blocks)


def test_an_ambiguous_name_gets_a_menu_of_just_those(harness: Harness) -> None:
    """Two instances named alike: a menu of those two, no card."""
    harness.dbss.instances[OTHER_ID].name = "audit-prod-1"
    harness.command("audit-prod-1")
    hook = eventually(lambda: harness.slack.hooks(), what="the menu")[0].json
    [select] = [e for b in hook["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert {o["value"] for o in select["options"]} == {INSTANCE_ID, OTHER_ID}
    assert "2 DBSS instances are named" in hook["text"]
    harness.drain()
    assert harness.slack.calls("chat.postMessage") == []


def test_an_unknown_name_is_refused_and_recorded(harness: Harness) -> None:
    """A name no instance has: said plainly, on record, nothing rebooted; a subcommand word stays a subcommand."""
    harness.command("audit-nope")
    text = harness.wait_for_hook()
    assert "No DBSS audit instance is named" in text and PROJECT_ID in text
    assert any(e.event == "refused" and e.detail and "audit-nope" in e.detail for e in harness.bot.store.audit())
    harness.command("list")
    assert "audit-prod-1" in harness.wait_for_hook(count=2)


def test_expired_line_names_the_instance_to_ask_again_with() -> None:
    """The expired card tells which ID to run the command with."""
    c = Confirmation(instance_id=INSTANCE_ID, requester=ALICE, channel=INCIDENTS, expires_at=0, nonce="n1")
    assert f"/dbss-reboot {INSTANCE_ID}" in messages.decision_line(Expired(c))


def test_slow_reboots_do_not_block_cancel_or_modal(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """Five confirmed reboots wait 3 s each on DBSS: a Cancel on another card and a modal open still happen at once
    (the reboots wait on a pool of their own)."""
    ids = [f"{n:032x}" for n in range(6)]
    for n, iid in enumerate(ids):
        fake_dbss.add_instance(iid, f"audit-slow-{n}")
    fake_dbss.delays["reboot"] = 3.0
    h = Harness(tmp_path, fake_dbss, fake_slack, dbss_timeout_seconds=10)
    try:
        cards = []
        for n, iid in enumerate(ids):
            h.command(iid)
            cards.append(h.wait_for_card(count=n + 1))
        for card in cards[:5]:
            h.click("dbss_reboot_confirm", card=card)
        eventually(lambda: len(fake_dbss.reboot_requests()) == 5, what="five reboots waiting on DBSS")
        started = time.monotonic()
        h.click("dbss_reboot_cancel", card=cards[5])
        global_shortcut(h, "5.5.5")
        eventually(
            lambda: "Cancelled by" in json.dumps(h.slack.messages[(cards[5].channel, cards[5].ts)].blocks),
            timeout=2,
            what="the cancel",
        )
        eventually(lambda: h.slack.calls("views.open"), timeout=2, what="the modal")
        assert time.monotonic() - started < 2.0
        assert len(fake_dbss.reboot_requests()) == 5
    finally:
        h.stop()
