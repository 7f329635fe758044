"""One bot, several (region, project) targets: each driven through the real request path against two DBSS
simulators on their own endpoints, signed with one AK/SK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, Harness, button_value, eventually

AK, SK = "AKFAKE0000000000000", "SKFAKEsecretsecretsecretsecretsecret00"
P1 = "0f3b00000000000000000000000000a1"
P2 = "9c1d00000000000000000000000000b2"
NORTH = "5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c01"  # in cn-north-4
SOUTH = "7e2d1b5f0a3c4b8d9e7f6a5b4c3d2e02"  # in ap-southeast-1
STAGING = "CSTAGING"


@pytest.fixture
def north() -> Iterator[FakeDbss]:
    fake = FakeDbss(project_id=P1, aksk={AK: SK})
    fake.add_instance(NORTH, "audit-north", region="cn-north-4")
    fake.add_instance("5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c03", "audit-shared", region="cn-north-4")
    with fake:
        yield fake


@pytest.fixture
def south() -> Iterator[FakeDbss]:
    fake = FakeDbss(project_id=P2, aksk={AK: SK})
    fake.add_instance(SOUTH, "audit-south", region="ap-southeast-1")
    fake.add_instance("7e2d1b5f0a3c4b8d9e7f6a5b4c3d2e04", "audit-shared", region="ap-southeast-1")
    with fake:
        yield fake


def regions(tmp_path: Path, north: FakeDbss, south: FakeDbss, slack: FakeSlack, **overrides: Any) -> Harness:
    """A bot serving cn-north-4 (`north`'s P1) and ap-southeast-1 (`south`'s P2), signing with AK/SK unless the
    overrides say otherwise (the Harness's single-project settings are unset)."""
    settings: dict[str, Any] = {
        "dbss_project_id": None,
        "dbss_endpoint": None,
        "dbss_auth_token": None,
        "dbss_ak": AK,
        "dbss_sk": SK,
        "dbss_targets": f"cn-north-4:{P1}@{north.url},ap-southeast-1:{P2}@{south.url}",
    }
    return Harness(tmp_path, north, slack, **{**settings, **overrides})


def field_texts(card: Any) -> str:
    return "\n".join(
        str(part.get("text", ""))
        for block in card.blocks
        for part in [block.get("text") or {}, *block.get("fields", [])]
        if isinstance(part, dict)
    )


def test_an_id_in_the_second_target_is_found_shown_with_its_region_and_rebooted_there(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    h = regions(tmp_path, north, south, fake_slack, bot_poll_interval_seconds=0.05)
    try:
        assert h.command(SOUTH).status_code == 200
        card = h.wait_for_card()
        assert "ap-southeast-1" in field_texts(card) and "audit-south" in field_texts(card)
        assert north.list_requests() and south.list_requests(), "both regions were searched"
        h.click("dbss_reboot_confirm", card=card)
        [sent] = eventually(south.reboot_requests, what="the reboot in ap-southeast-1")
        assert sent.path == f"/v1/{P2}/audit/instance/reboot" and sent.json == {"instance_id": SOUTH}
        assert sent.headers["x-project-id"] == P2, "signed for the second target's project"
        assert north.reboot_requests() == [], "never sent to the other region"
        done = eventually(
            lambda: next((m for m in fake_slack.thread(card.channel, card.ts) if "back to *ACTIVE*" in m.text), None),
            timeout=10,
            what="the follow-up's end",
        )
        assert f"`{SOUTH}` in ap-southeast-1 is back to *ACTIVE*" in done.text
        thread = [m.text for m in fake_slack.thread(card.channel, card.ts)]
        assert any(f"DBSS accepted the reboot of `{SOUTH}` in ap-southeast-1" in t for t in thread), thread
        result = [e for e in h.bot.store.audit(instance_id=SOUTH) if e.event == "reboot_result"]
        assert [(e.outcome, e.region) for e in result] == [("accepted", "ap-southeast-1")]
        h.command(f"history {SOUTH}")
        history = eventually(
            lambda: next((t for t in fake_slack.hook_texts() if "Latest reboots" in t), None), what="the history"
        )
        assert f"`{SOUTH}` in ap-southeast-1 by" in history
    finally:
        h.stop()


def test_a_name_in_two_targets_is_ambiguous_and_gets_the_picker(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    h = regions(tmp_path, north, south, fake_slack)
    try:
        h.command("audit-shared")
        answer = eventually(
            lambda: next((r.json for r in fake_slack.hooks() if r.json.get("blocks")), None), what="the picker"
        )
        assert "2 DBSS instances are named `audit-shared`" in answer["text"]
        [select] = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
        labels = sorted(o["text"]["text"] for o in select["options"])
        assert labels == [
            "ap-southeast-1 · audit-shared · ACTIVE/NO_TASK",
            "cn-north-4 · audit-shared · ACTIVE/NO_TASK",
        ]
        time.sleep(0.2)
        assert not [m for m in fake_slack.messages.values() if m.thread_ts is None], "no card for an ambiguous name"
        h.command("list")
        listing = eventually(
            lambda: next((t for t in fake_slack.hook_texts() if "DBSS audit instances in" in t), None), what="the list"
        )
        assert "in ap-southeast-1, cn-north-4" in listing
        assert f"`{NORTH}`: ACTIVE / NO_TASK · cn-north-4" in listing
        assert f"`{SOUTH}`: ACTIVE / NO_TASK · ap-southeast-1" in listing
    finally:
        h.stop()


def test_a_channel_scoped_away_from_a_region_is_refused_with_the_reason(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    h = regions(tmp_path, north, south, fake_slack, bot_channel_targets=f"{STAGING}=cn-north-4")
    try:
        h.command(SOUTH, channel=STAGING)
        refusal = h.wait_for_hook()
        assert "only in cn-north-4" in refusal and "ap-southeast-1" in refusal and "BOT_CHANNEL_TARGETS" in refusal
        [entry] = [e for e in h.bot.store.audit(instance_id=SOUTH) if e.event == "refused"]
        assert entry.channel == STAGING
        h.command(NORTH, channel=STAGING)  # its own region is fine
        card = h.wait_for_card()
        assert "cn-north-4" in field_texts(card)
        h.command(SOUTH, channel=INCIDENTS)  # a channel not named reaches every region
        h.wait_for_card(count=2)
        time.sleep(0.2)
        assert south.reboot_requests() == []
    finally:
        h.stop()


def test_scoping_is_checked_again_at_the_click(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    """A card offered before the channel was scoped away from its region cannot be confirmed after."""
    h = regions(tmp_path, north, south, fake_slack)
    try:
        h.command(SOUTH)
        card = h.wait_for_card()
        h.settings = h.settings.model_copy(update={"bot_channel_targets": f"{INCIDENTS}=cn-north-4"})
        h.restart()
        h.click("dbss_reboot_confirm", card=card, value=button_value(card, "dbss_reboot_confirm"))
        refusal = eventually(
            lambda: next((t for t in fake_slack.hook_texts() if "only in cn-north-4" in t), None), what="the refusal"
        )
        assert "ap-southeast-1" in refusal
        time.sleep(0.2)
        assert south.reboot_requests() == [] and north.reboot_requests() == []
    finally:
        h.stop()


def test_one_region_down_while_the_other_reboots_and_follows(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    """ap-southeast-1 stops answering (its list calls hang past the timeout) after accepting a reboot: its
    follow-up says the region cannot be read; cn-north-4's reboot is carded, sent and followed to its end."""
    north.reboot_polls = south.reboot_polls = 3
    h = regions(tmp_path, north, south, fake_slack, bot_poll_interval_seconds=0.1, dbss_timeout_seconds=1)
    try:
        h.command(SOUTH)
        south_card = h.wait_for_card()
        h.click("dbss_reboot_confirm", card=south_card)
        eventually(south.reboot_requests, what="the reboot in ap-southeast-1")
        south.delays["list"] = 30.0  # down: every list call now times out
        started = time.monotonic()
        h.command(NORTH)
        north_card = eventually(
            lambda: (card := h.wait_for_card()).ts != south_card.ts and card, what="cn-north-4's card"
        )
        assert "cn-north-4" in field_texts(north_card)
        h.click("dbss_reboot_confirm", card=north_card)
        eventually(north.reboot_requests, what="the reboot in cn-north-4")
        done = eventually(
            lambda: next(
                (m for m in fake_slack.thread(north_card.channel, north_card.ts) if "back to *ACTIVE*" in m.text), None
            ),
            timeout=15,
            what="cn-north-4's follow-up to end",
        )
        assert NORTH in done.text
        assert time.monotonic() - started < 6, "the region that hangs did not hold the other's follow-up back"
        note = eventually(
            lambda: next(
                (
                    m
                    for m in fake_slack.thread(south_card.channel, south_card.ts)
                    if "ap-southeast-1 cannot be read right now" in m.text
                ),
                None,
            ),
            timeout=10,
            what="ap-southeast-1's progress to say it cannot be read",
        )
        assert not any("back to" in m.text for m in fake_slack.thread(south_card.channel, south_card.ts)), note.text
        assert h.bot.store.current_lock(SOUTH) is not None, "still followed, not given up"
    finally:
        south.delays["list"] = 0.0
        h.stop()


def test_iam_logs_in_once_per_target_under_50_concurrent_reboots(tmp_path: Path, fake_slack: FakeSlack) -> None:
    """IAM password login: one project-scoped token per target, shared by every call to that target; 50
    reboots confirmed at once across two regions cost one login per project (the gateway refuses a token on
    another project's path, so a token used across targets would show as refused reboots)."""
    users = {("acme", "oncall-bot"): "correct horse battery staple"}
    north = FakeDbss(project_id=P1, region="cn-north-4", iam_users=users)
    south = FakeDbss(project_id=P2, region="ap-southeast-1", cloud=north.cloud)
    ids = {P1: [f"5b1c0a4e9d2f4a7b8c6d5e4f3a2b{n:04d}" for n in range(25)]}
    ids[P2] = [f"7e2d1b5f0a3c4b8d9e7f6a5b4c3d{n:04d}" for n in range(25)]
    for fake, project in ((north, P1), (south, P2)):
        for n, iid in enumerate(ids[project]):
            fake.add_instance(iid, f"audit-{project[:4]}-{n}")
    with north, south:
        h = regions(
            tmp_path,
            north,
            south,
            fake_slack,
            dbss_ak=None,
            dbss_sk=None,
            dbss_iam_domain="acme",
            dbss_iam_user="oncall-bot",
            dbss_iam_password="correct horse battery staple",
            dbss_iam_endpoint=north.url,
            bot_allowed_users=ALICE,
        )
        try:
            everything = ids[P1] + ids[P2]
            with ThreadPoolExecutor(max_workers=25) as pool:
                assert all(r.status_code == 200 for r in pool.map(h.command, everything))
                cards = eventually(
                    lambda: found if len(found := h.wait_for_cards()) >= 50 else None, timeout=20, what="50 cards"
                )
                clicks = pool.map(lambda card: h.click("dbss_reboot_confirm", card=card), cards)
                assert all(r.status_code == 200 for r in clicks)
            eventually(
                lambda: len(north.reboot_requests()) + len(south.reboot_requests()) >= 50, timeout=20, what="50 reboots"
            )
            assert sorted(north.reboots_done) == sorted(ids[P1]) and sorted(south.reboots_done) == sorted(ids[P2])
            assert dict(north.logins_by_project) == {P1: 1, P2: 1}
            assert {r.path for r in south.reboot_requests()} == {f"/v1/{P2}/audit/instance/reboot"}
            # Each token is renewed on its own: ap-southeast-1's expires, and only its project logs in again.
            with north.lock:
                north.expired_tokens.update(t for t, p in north.cloud.token_projects.items() if p == P2)
            h.command("list")
            eventually(lambda: any("DBSS audit instances in" in t for t in fake_slack.hook_texts()), what="the list")
            assert dict(north.logins_by_project) == {P1: 1, P2: 2}
        finally:
            h.stop()


def test_the_modal_and_the_message_shortcut_show_the_region(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    from tests.slack.test_shortcuts import ALERT_TS, global_shortcut, shortcut

    h = regions(tmp_path, north, south, fake_slack)
    try:
        global_shortcut(h, "9.9.9")
        eventually(lambda: fake_slack.calls("views.update"), what="the modal to fill in")
        options = fake_slack.views["V1"]["blocks"][0]["element"]["options"]
        labels = {o["value"]: o["text"]["text"] for o in options}
        assert labels[NORTH] == "cn-north-4 · audit-north · ACTIVE/NO_TASK"
        assert labels[SOUTH] == "ap-southeast-1 · audit-south · ACTIVE/NO_TASK"
        shortcut(h, {"text": f"DBSS audit agent down on {NORTH} and {SOUTH}"})
        asked = eventually(lambda: [r.json for r in fake_slack.hooks() if r.json.get("blocks")], what="which one")[0]
        named = {o["value"]: o["text"]["text"] for o in asked["blocks"][1]["elements"][0]["options"]}
        assert named == {NORTH: labels[NORTH], SOUTH: labels[SOUTH]}
        shortcut(h, {"text": f"audit agent down on {SOUTH}"})
        card = eventually(
            lambda: next(
                (m for m in fake_slack.thread(INCIDENTS, ALERT_TS) if "asks to *reboot*" in str(m.blocks)), None
            ),
            what="the card in the alert's thread",
        )
        assert "in *ap-southeast-1*" in str(card.blocks) and "*Region*\\n`ap-southeast-1`" in str(card.blocks)
    finally:
        h.stop()


def test_a_name_found_once_while_a_region_is_down_is_not_guessed(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    """ap-southeast-1 is down: `audit-shared` is found only in cn-north-4, but may be there too. No card: the ID
    is given instead. An ID in the region that is down is offered there, its state unknown; with every region
    down, the bot cannot tell where an ID is, and lists say DBSS cannot be read."""
    south.outages[P2] = south.gateway_error(503, "APIGW.0610", "No backend available")
    h = regions(tmp_path, north, south, fake_slack)
    try:
        h.command("audit-shared")
        unsure = eventually(
            lambda: next((t for t in fake_slack.hook_texts() if "is named `audit-shared`" in t), None), what="answer"
        )
        assert "`ap-southeast-1` cannot be read right now" in unsure and "/dbss-reboot 5b1c0a4e" in unsure
        h.command(SOUTH)
        card = h.wait_for_card()
        text = field_texts(card)
        assert f"`{SOUTH}` in `ap-southeast-1`" in text and "could not be read" in text
        assert "HTTP 503" in text
        north.outages[P1] = north.gateway_error(503, "APIGW.0610", "No backend available")
        h.command(NORTH)
        nowhere = eventually(
            lambda: next((t for t in fake_slack.hook_texts() if "cannot tell where it is" in t), None), what="answer"
        )
        assert "`cn-north-4`, `ap-southeast-1` cannot be read right now" in nowhere
        h.command("list")
        down = eventually(
            lambda: next((t for t in fake_slack.hook_texts() if "No region's instance list" in t), None), what="list"
        )
        assert "cn-north-4: DbssApiError; ap-southeast-1: DbssApiError" in down
        assert not any("No instances are visible" in t for t in fake_slack.hook_texts())
    finally:
        h.stop()


def test_menus_offer_only_the_regions_a_channel_may_reach(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    h = regions(tmp_path, north, south, fake_slack, bot_channel_targets=f"{STAGING}=cn-north-4")
    try:
        h.command("", channel=STAGING)
        picker = eventually(
            lambda: next((r.json for r in fake_slack.hooks() if r.json.get("blocks")), None), what="the picker"
        )
        [select] = [e for b in picker["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert {o["value"] for o in select["options"]} == {NORTH, "5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c03"}
    finally:
        h.stop()


def suggestion(action_id: str, value: str, *, channel: str | None = None, modal_channel: str | None = None) -> str:
    """A signed-ready block_suggestion body: from the picker in a channel, or from the global modal."""
    payload: dict[str, Any] = {
        "type": "block_suggestion",
        "user": {"id": ALICE},
        "team": {"id": "T1"},
        "action_id": action_id,
        "block_id": action_id,
        "value": value,
    }
    if channel is not None:
        payload["channel"] = {"id": channel}
        payload["container"] = {"type": "message", "channel_id": channel, "message_ts": "1.2", "is_ephemeral": True}
    if modal_channel is not None:
        state = {"channel": {"channel": {"type": "conversations_select", "selected_conversation": modal_channel}}}
        payload["view"] = {"id": "V1", "type": "modal", "state": {"values": state}}
    return urlencode({"payload": json.dumps(payload)})


def test_type_ahead_offers_only_what_the_channel_may_reach(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    """Type-ahead answers as the static menus do: a channel scoped to cn-north-4 is offered only its names, a
    channel outside BOT_ALLOWED_CHANNELS nothing; in the modal, the channel chosen there scopes the options."""
    h = regions(
        tmp_path,
        north,
        south,
        fake_slack,
        bot_channel_targets=f"{STAGING}=cn-north-4",
        bot_allowed_channels=f"{INCIDENTS},{STAGING}",
    )
    try:

        def offered(body: str) -> set[str]:
            return {o["value"] for o in h.post(body).json()["options"]}

        shared = {NORTH: "5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c03", SOUTH: "7e2d1b5f0a3c4b8d9e7f6a5b4c3d2e04"}
        assert offered(suggestion("dbss_reboot_pick", "audit", channel=INCIDENTS)) == {*shared, *shared.values()}
        assert offered(suggestion("dbss_reboot_pick", "audit", channel=STAGING)) == {NORTH, shared[NORTH]}
        assert offered(suggestion("dbss_reboot_pick", "audit", channel="CELSEWHERE")) == set()
        assert offered(suggestion("instance", "audit", modal_channel=STAGING)) == {NORTH, shared[NORTH]}
        assert offered(suggestion("instance", "audit")) == {*shared, *shared.values()}  # no channel chosen yet
    finally:
        h.stop()


def test_a_card_from_before_several_regions_is_refused_as_not_sent(
    tmp_path: Path, north: FakeDbss, south: FakeDbss, fake_slack: FakeSlack
) -> None:
    """A card offered while the bot served one project names no region; after the move to DBSS_TARGETS its
    Confirm sends nothing, says why, and leaves no lock."""
    h = Harness(tmp_path, north, fake_slack, dbss_auth_token=None, dbss_ak=AK, dbss_sk=SK, dbss_project_id=P1)
    try:
        h.command(NORTH)
        card = h.wait_for_card()
        h.settings = h.settings.model_copy(
            update={
                "dbss_project_id": None,
                "dbss_endpoint": None,
                "dbss_targets": f"cn-north-4:{P1}@{north.url},ap-southeast-1:{P2}@{south.url}",
            }
        )
        h.restart()
        h.click("dbss_reboot_confirm", card=card, value=button_value(card, "dbss_reboot_confirm"))
        said = eventually(
            lambda: next((m.text for m in fake_slack.thread(card.channel, card.ts) if "was not sent" in m.text), None),
            what="the thread to say it was not sent",
        )
        assert "made before the bot served several regions" in said
        assert north.reboot_requests() == [] and south.reboot_requests() == []
        eventually(lambda: h.bot.store.current_lock(NORTH) is None, what="no lock left")
    finally:
        h.stop()


def test_two_projects_in_one_region_are_told_apart(tmp_path: Path, north: FakeDbss, fake_slack: FakeSlack) -> None:
    p3 = "77770000000000000000000000000003"
    north.add_project(p3, "cn-north-4")
    north.add_instance("5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c09", "audit-shared", project=p3)
    h = regions(
        tmp_path, north, north, fake_slack, dbss_targets=f"cn-north-4:{P1}@{north.url},cn-north-4:{p3}@{north.url}"
    )
    try:
        h.command("audit-shared")
        answer = eventually(
            lambda: next((r.json for r in fake_slack.hooks() if r.json.get("blocks")), None), what="the picker"
        )
        [select] = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert sorted(o["text"]["text"].split(" · ")[0] for o in select["options"]) == [
            f"cn-north-4/{P1}",
            f"cn-north-4/{p3}",
        ]
        h.command("5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c09")
        card = h.wait_for_card()
        assert f"in *cn-north-4/{p3}*" in field_texts(card)
        h.click("dbss_reboot_confirm", card=card)
        [sent] = eventually(lambda: north.reboot_requests(project=p3), what="the reboot in the second project")
        assert sent.path == f"/v1/{p3}/audit/instance/reboot" and north.reboot_requests(project=P1) == []
    finally:
        h.stop()
