"""status, list, history and the instance picker: private answers, and the picker leading to the same card."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, MALLORY, Harness, eventually


def hook_bodies(h: Harness) -> list[dict[str, object]]:
    return [r.json for r in h.slack.hooks()]


def test_status_shows_state_version_region_and_last_reboot(harness: Harness) -> None:
    """`status <id>` answers privately with name, status, task, version, region and the last reboot."""
    assert harness.command(f"status {INSTANCE_ID}").text == ""
    text = harness.wait_for_hook()
    for fragment in [
        "audit-prod-1",
        INSTANCE_ID,
        "*ACTIVE*",
        "*NO_TASK*",
        "23.04.18.102306",
        "cn-north-4",
        "No reboot by this bot on record",
    ]:
        assert fragment in text
    assert hook_bodies(harness)[0]["response_type"] == "ephemeral"
    card = harness.command(INSTANCE_ID) and harness.wait_for_card()
    harness.click("dbss_reboot_confirm", card=card)
    harness.wait_for_thread(card)
    harness.command(f"status {INSTANCE_ID}")
    assert "Last reboot by this bot" in harness.wait_for_hook(count=2) and "accepted" in harness.wait_for_hook(count=2)


def test_status_of_unknown_instance(harness: Harness) -> None:
    harness.command("status " + "e" * 32)
    assert "No DBSS audit instance" in harness.wait_for_hook()


def test_list_shows_every_instance_with_state_and_pages(harness: Harness) -> None:
    """`list` shows instances with status and task, 25 a page, with a pointer to the next page."""
    for n in range(30):
        harness.dbss.add_instance(f"{n:032x}", f"audit-{n}")
    harness.command("list")
    first = harness.wait_for_hook()
    assert "(32, page 1 of 2)" in first and PROJECT_ID in first and "`/dbss-reboot list 2`" in first
    assert "audit-prod-1" in first and "ACTIVE / NO_TASK" in first
    harness.command("list 2")
    second = harness.wait_for_hook(count=2)
    assert "page 2 of 2" in second and "audit-29" in second and "list 3" not in second


def test_history_lists_the_latest_reboots_with_links(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """`history` lists who rebooted what, when, the outcome and the thread; `history <id>` filters."""
    fake_dbss.reboot_polls = 0
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        h.click("dbss_reboot_confirm", card=card)
        eventually(lambda: h.bot.store.active_followups() == [] and h.bot.store.reboots(), what="the follow-up")
        eventually(lambda: h.bot.store.followup_outcome(h.bot.store.reboots()[0].correlation_id or ""), what="outcome")
        h.command("history")
        text = h.wait_for_hook()
        assert INSTANCE_ID in text and f"<@{ALICE}>" in text and "accepted, then healthy" in text
        assert f"https://acme.slack.com/archives/{INCIDENTS}/p{card.ts.replace('.', '')}" in text
        h.command(f"history {OTHER_ID}")
        assert "No reboots of" in h.wait_for_hook(count=2)
    finally:
        h.stop()


def test_read_only_subcommands_need_the_user_allow_list(harness: Harness) -> None:
    """status, list and history are refused to people off the allow-list, without a DBSS call."""
    for text in ["list", f"status {INSTANCE_ID}", "history"]:
        assert "allow-list" in harness.command(text, user=MALLORY).json()["text"]
    harness.drain()
    assert harness.dbss.received == []


def test_subcommand_words_do_not_collide_with_ids(harness: Harness) -> None:
    """Malformed subcommands get their own usage, and `status` with a bad ID is refused like a bad ID."""
    assert "Usage: `/dbss-reboot status" in harness.command("status").json()["text"]
    assert "not a DBSS instance ID" in harness.command("status nope").json()["text"]
    assert "Usage: `/dbss-reboot list [page]`" in harness.command("list all").json()["text"]


def test_empty_command_shows_a_picker_and_picking_posts_the_card(harness: Harness) -> None:
    """No argument: a private select menu of instances with their state; choosing one gives the same card."""
    harness.dbss.instances[OTHER_ID].task = "rebooting"
    harness.dbss.instances[OTHER_ID].rebooting_polls_left = 5
    assert harness.command("").text == ""
    picker = eventually(lambda: [b for b in hook_bodies(harness) if b.get("blocks")], what="the picker")[0]
    select = picker["blocks"][1]["elements"][0]  # type: ignore[index]
    assert select["type"] == "static_select" and select["action_id"] == "dbss_reboot_pick"
    labels = {o["value"]: o["text"]["text"] for o in select["options"]}
    assert labels[INSTANCE_ID] == "audit-prod-1 · ACTIVE/NO_TASK" and labels[OTHER_ID].endswith("ACTIVE/rebooting")
    payload = {
        "type": "block_actions",
        "user": {"id": ALICE},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "channel": {"id": INCIDENTS},
        "container": {"type": "message", "is_ephemeral": True, "channel_id": INCIDENTS},
        "response_url": harness.hook_url(),
        "trigger_id": "1.2",
        "actions": [
            {
                "action_id": "dbss_reboot_pick",
                "block_id": "dbss_reboot_picker",
                "type": "static_select",
                "selected_option": {"value": INSTANCE_ID, "text": {"type": "plain_text", "text": "x"}},
            }
        ],
    }
    assert harness.post(urlencode({"payload": json.dumps(payload)})).status_code == 200
    card = harness.wait_for_card()
    assert INSTANCE_ID in str(card.blocks) and f"<@{ALICE}>" in str(card.blocks)
    assert any(b.get("delete_original") is True for b in hook_bodies(harness)), "the picker is removed"
    harness.click("dbss_reboot_confirm", card=card)
    eventually(lambda: harness.dbss.reboots_done, what="the reboot")


def test_picker_refuses_people_off_the_allow_list(harness: Harness) -> None:
    body = harness.command("", user=MALLORY).json()
    assert "allow-list" in body["text"]
    harness.drain()
    assert harness.dbss.received == []


def test_forged_picker_value_is_refused(harness: Harness) -> None:
    """A select value that is not an instance ID is refused; a forged pick by an outsider gets no card."""
    for user, value in [(ALICE, "../../etc"), (MALLORY, INSTANCE_ID)]:
        payload = {
            "type": "block_actions",
            "user": {"id": user},
            "team": {"id": "T1"},
            "channel": {"id": INCIDENTS},
            "response_url": harness.hook_url(),
            "actions": [{"action_id": "dbss_reboot_pick", "selected_option": {"value": value}}],
        }
        harness.post(urlencode({"payload": json.dumps(payload)}))
    eventually(lambda: any("not a DBSS instance ID" in t for t in harness.slack.hook_texts()), what="ID refusal")
    eventually(lambda: any("allow-list" in t for t in harness.slack.hook_texts()), what="allow-list refusal")
    harness.drain()
    assert harness.slack.calls("chat.postMessage") == []
