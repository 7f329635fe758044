"""/dbss-reboot through Bolt's real HTTP request path: acks, refusals, and the confirmation card."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.http import Answer
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, MALLORY, RANDOM, Harness, eventually, sign


def test_valid_command_is_acked_at_once_even_when_dbss_is_slow(harness: Harness) -> None:
    """The ack, a private "Looking up <id>…", comes well within 3 s although the instance lookup takes 2 s."""
    harness.dbss.delays["list"] = 2.0
    started = time.monotonic()
    response = harness.command(INSTANCE_ID)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"response_type": "ephemeral", "text": f":mag: Looking up `{INSTANCE_ID}`…"}
    assert elapsed < 1.0
    card = harness.wait_for_card()
    assert card.channel == INCIDENTS


def test_card_shows_who_asks_and_what_will_be_rebooted(harness: Harness) -> None:
    """The card names the requester, the instance's name, ID, status and task, with danger Confirm and Cancel."""
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    [post] = harness.slack.calls("chat.postMessage")
    assert post["channel"] == INCIDENTS and "thread_ts" not in post
    rendered = str(card.blocks)
    for expected in [f"<@{ALICE}>", "audit-prod-1", INSTANCE_ID, "ACTIVE", "NO_TASK"]:
        assert expected in rendered
    actions = next(b for b in card.blocks if b["type"] == "actions")
    confirm, cancel = actions["elements"]
    assert confirm["action_id"] == "dbss_reboot_confirm" and confirm["style"] == "danger"
    assert confirm["confirm"]["style"] == "danger" and INSTANCE_ID in confirm["confirm"]["text"]["text"]
    assert cancel["action_id"] == "dbss_reboot_cancel"
    assert confirm["value"] == cancel["value"] and len(confirm["value"]) <= 2000
    assert card.text.startswith(f"<@{ALICE}> asks to reboot")
    assert harness.dbss.reboot_requests() == []


def test_user_not_on_allow_list_is_refused_privately_without_dbss(harness: Harness) -> None:
    """A user outside BOT_ALLOWED_USERS gets an ephemeral refusal saying what to do; DBSS is never called."""
    response = harness.command(INSTANCE_ID, user=MALLORY)
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "not on this bot's reboot allow-list" in body["text"] and MALLORY in body["text"]
    harness.drain()
    assert harness.dbss.received == []
    assert harness.slack.calls("chat.postMessage") == []
    assert [e.event for e in harness.bot.store.audit()] == ["refused"]


def test_empty_allow_list_means_nobody(tmp_path: object, fake_dbss: object, fake_slack: object) -> None:
    """With BOT_ALLOWED_USERS empty, even a well-formed request is refused."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_users="")  # type: ignore[arg-type]
    try:
        assert "allow-list" in h.command(INSTANCE_ID).json()["text"]
        h.drain()
        assert h.dbss.received == []
    finally:
        h.stop()


def test_channel_not_on_channel_allow_list_is_refused(tmp_path: object, fake_dbss: object, fake_slack: object) -> None:
    """With BOT_ALLOWED_CHANNELS set, the command works only there."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_channels=INCIDENTS)  # type: ignore[arg-type]
    try:
        refused = h.command(INSTANCE_ID, channel=RANDOM).json()
        assert refused["response_type"] == "ephemeral" and "not enabled in this channel" in refused["text"]
        h.drain()
        assert h.dbss.received == []
        assert "Looking up" in h.command(INSTANCE_ID, channel=INCIDENTS).json()["text"]
        assert h.wait_for_card().channel == INCIDENTS
    finally:
        h.stop()


def test_malformed_ids_and_extra_words_are_refused(harness: Harness) -> None:
    """IDs of the wrong length or alphabet, and extra words, are refused with usage; nothing reaches DBSS."""
    cases = {
        "short/id": "not a DBSS instance ID",
        "a" * 65: "not a DBSS instance ID",
        "../../v1/other/audit/instance/reboot/xx": "not a DBSS instance ID",
        f"{INSTANCE_ID} now": "exactly one instance ID",
        f"{INSTANCE_ID} {OTHER_ID}": "exactly one instance ID",
        "\uff41\uff42\uff43" * 11: "not a DBSS instance ID",  # full-width letters look like an ID
    }
    for text, expected in cases.items():
        body = harness.command(text).json()
        assert body["response_type"] == "ephemeral"
        assert expected in body["text"], text
        assert "/dbss-reboot &lt;instance_id&gt;" in body["text"]
    harness.drain()
    assert harness.dbss.received == []


def test_help_shows_usage_and_whether_the_caller_may_reboot_here(harness: Harness) -> None:
    """`help` answers with every subcommand and whether (and why not) the caller may reboot here."""
    for text in ["help", "  HELP "]:
        body = harness.command(text).json()
        for usage in ["/dbss-reboot &lt;instance_id&gt;", "status", "list", "history"]:
            assert usage in body["text"]
        assert "You may request reboots in this channel." in body["text"]
    refused = harness.command("help", user=MALLORY).json()["text"]
    assert "You cannot request reboots here" in refused and "allow-list" in refused


def test_unknown_instance_is_refused_privately(harness: Harness) -> None:
    """An ID DBSS does not list is refused through response_url, with no card."""
    harness.command("f" * 32)
    text = harness.wait_for_hook()
    assert "No DBSS audit instance" in text and "f" * 32 in text and PROJECT_ID in text
    assert harness.slack.calls("chat.postMessage") == []


def test_instance_not_ready_is_not_offered(harness: Harness) -> None:
    """An instance that is not ACTIVE/NO_TASK gets no card; the message gives its state."""
    harness.dbss.instances[INSTANCE_ID].status = "SHUTOFF"
    harness.command(INSTANCE_ID)
    text = harness.wait_for_hook()
    assert "*SHUTOFF*" in text and "NO_TASK" in text and "audit-prod-1" in text
    assert harness.slack.calls("chat.postMessage") == []


def test_unreadable_state_still_offers_a_card_that_says_so(harness: Harness) -> None:
    """If the list is refused (IAM policy), the card says the state is unknown and still has Confirm."""
    harness.dbss.script("list", harness.dbss.gateway_error(403, "APIGW.0302", "The IAM user is not authorized"))
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    rendered = str(card.blocks)
    assert "could not be read" in rendered and "APIGW.0302" in rendered
    harness.click("dbss_reboot_confirm", card=card)
    eventually(lambda: harness.dbss.reboots_done, what="the reboot")


def test_bot_not_in_channel_tells_the_person_how_to_fix_it(harness: Harness) -> None:
    """chat.postMessage failing with not_in_channel yields a private 'invite me' through response_url."""
    harness.slack.not_in_channel.add(INCIDENTS)
    harness.command(INSTANCE_ID)
    text = harness.wait_for_hook()
    assert "not_in_channel" in text and "/invite" in text
    assert [e.event for e in harness.bot.store.audit()][-1] == "card_failed"


def test_channel_not_found_is_explained_too(harness: Harness) -> None:
    harness.slack.fail_next("chat.postMessage", "channel_not_found")
    harness.command(INSTANCE_ID)
    assert "channel_not_found" in harness.wait_for_hook()


def test_instance_name_cannot_mention_or_link(harness: Harness) -> None:
    """An instance name with <!channel> and a fake link is escaped on the card, and the bare URL left in it is
    set as inline code, which Slack never turns into a link."""
    harness.dbss.instances[INSTANCE_ID].name = "<!channel> <https://evil.example|click me> & more"
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    rendered = str(card.blocks)
    assert "<!channel>" not in rendered and "<https://evil" not in rendered
    assert "&lt;!channel&gt; &lt;`https://evil.example|click` me&gt; &amp; more" in rendered


def test_bad_signature_and_stale_timestamp_are_401(harness: Harness) -> None:
    """Requests not signed with the signing secret, or older than five minutes, are rejected with 401."""
    body = "command=%2Fdbss-reboot&text=" + INSTANCE_ID + f"&user_id={ALICE}&channel_id={INCIDENTS}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    forged = harness.http.post("/slack/events", content=body, headers={**form, **sign(body, secret="not-the-secret")})
    stale = harness.http.post(
        "/slack/events", content=body, headers={**form, **sign(body, timestamp=int(time.time()) - 301)}
    )
    unsigned = harness.http.post(
        "/slack/events", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (forged.status_code, stale.status_code, unsigned.status_code) == (401, 401, 401)
    harness.drain()
    assert harness.dbss.received == [] and harness.slack.calls("chat.postMessage") == []


def test_healthz(harness: Harness) -> None:
    assert harness.http.get("/healthz").status_code == 200


def test_slack_api_errors_other_than_membership_reach_the_person(harness: Harness) -> None:
    """An unexpected Slack error while posting the card is logged and the person hears something went wrong."""
    harness.slack.fail_next("chat.postMessage", "invalid_blocks")
    harness.command(INSTANCE_ID)
    assert "Something went wrong" in harness.wait_for_hook()


def test_slack_rate_limiting_the_card_is_said_in_plain_words(harness: Harness) -> None:
    """Slack still answering 429 after the client's own retries: 'rate-limiting this channel, try again in a
    minute', not an error of the bot's, and the refusal is on record."""
    for _ in range(3):
        harness.slack.fail_next("chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "0"})
    harness.command(INSTANCE_ID)
    text = harness.wait_for_hook()
    assert "rate-limiting this channel" in text and "try again in a minute" in text
    assert "Something went wrong" not in text
    assert [e.detail for e in harness.bot.store.audit() if e.event == "card_failed"] == ["ratelimited"]


def test_list_is_read_with_the_project_and_token(harness: Harness) -> None:
    """The lookup behind the card is a real v2 list call with the configured token."""
    harness.dbss.script("list", Answer(200, {"instances": [], "total": 0}))
    harness.command(INSTANCE_ID)
    harness.wait_for_hook()
    [listed] = harness.dbss.list_requests()
    assert listed.path == f"/v2/{PROJECT_ID}/audit/instances" and listed.headers["x-auth-token"] == "good-token"


@pytest.mark.parametrize("fault", ["reset_after", "timeout", "reset", "500"])
def test_a_card_post_that_may_have_reached_slack_is_looked_up_not_posted_blindly(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, fault: str
) -> None:
    """The card's post meets a dropped connection or a timeout after Slack stored it, or a reset or a 500 before:
    the bot looks for it by the key in its metadata, and posts it again only if it is not there. One live card
    either way, recorded as posted with its ts, and no false error for the person."""
    h = Harness(tmp_path, fake_dbss, fake_slack, slack_timeout_seconds=1)
    try:
        struck = fake_slack.fault("chat.postMessage", fault, lambda a: "asks to reboot" in str(a.get("text")))
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        h.drain()
        assert struck.hit is not None, "the fault never struck: the test would prove nothing"
        cards = [m for m in fake_slack.messages.values() if "asks to reboot" in m.text]
        assert cards == [card]
        assert [e.thread_ts for e in h.bot.store.audit() if e.event == "card_posted"] == [card.ts]
        assert not [t for t in fake_slack.hook_texts() if "went wrong" in t or "not posted" in t]
        h.click("dbss_reboot_confirm", card=card)
        eventually(lambda: fake_dbss.reboot_requests(), what="the reboot from the one card")
    finally:
        h.stop()


def test_bare_urls_in_dbss_text_cannot_become_links(harness: Harness) -> None:
    """DBSS's error message naming a URL, a bare domain and an address: in the thread each is inline code (shown
    as typed, never linked); the message's own code span stays, and its unpaired backtick cannot open a span that
    would end one of them early."""
    harness.dbss.script(
        "reboot",
        harness.dbss.dbss_error(
            400, "DBSS.10020132", "`busy`: see https://evil.example/fix, evil.example or ops@evil.example `"
        ),
    )
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    harness.click("dbss_reboot_confirm", card=card)
    [reply] = harness.wait_for_thread(card)
    assert "`https://evil.example/fix,`" in reply.text  # the comma too: Slack would not link it, and it shows
    assert " `evil.example` " in reply.text and "`ops@evil.example`" in reply.text
    assert "`busy`" in reply.text and "ops@evil.example` '" in reply.text
