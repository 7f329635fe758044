"""Following a reboot to the end in the card's thread: progress in place, then healthy, alert or timeout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bot.core.store import StateStore
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, BOB, Harness, eventually


def reboot_and_wait(h: Harness, *, user: str = ALICE) -> Any:
    h.command(INSTANCE_ID, user=user)
    card = h.wait_for_card()
    h.click("dbss_reboot_confirm", card=card, user=user)
    return card


def final_reply(h: Harness, card: Any, fragment: str, timeout: float = 10) -> Any:
    return eventually(
        lambda: next((m for m in h.slack.thread(card.channel, card.ts) if fragment in m.text), None),
        timeout=timeout,
        what=f"a thread reply with {fragment!r}",
    )


def test_followed_until_active_with_one_progress_message(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """Progress is one thread message updated in place; the end says 'back to ACTIVE after …' and frees the lock."""
    fake_dbss.reboot_polls = 4
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05)
    try:
        card = reboot_and_wait(h)
        done = final_reply(h, card, "is back to *ACTIVE* after")
        progress = [m for m in h.slack.thread(card.channel, card.ts) if m.text.startswith((":hourglass", ":checkered"))]
        assert len(progress) == 1, "one progress message, updated in place"
        [message] = progress
        assert message.history and any("rebooting" in old["text"] for old in message.history)
        assert message.text.startswith(":checkered_flag:")
        updates = [u for u in h.slack.calls("chat.update") if u["ts"] == message.ts]
        assert updates and updates[-1]["text"].startswith(":checkered_flag:")
        assert INSTANCE_ID in done.text
        eventually(lambda: h.bot.store.current_lock(INSTANCE_ID) is None, what="the lock to be released")
        assert [e.outcome for e in h.bot.store.audit(instance_id=INSTANCE_ID)][-1] == "healthy"
    finally:
        h.stop()


def test_ending_in_another_status_is_an_alert_to_the_requester(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """An instance that comes back ERROR gets an alert mentioning the requester, broadcast to the channel."""
    fake_dbss.instances[INSTANCE_ID].end_status = "ERROR"
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05)
    try:
        card = reboot_and_wait(h)
        alert = final_reply(h, card, ":rotating_light:")
        assert f"<@{ALICE}>" in alert.text and "*ERROR*" in alert.text
        [post] = [p for p in h.slack.calls("chat.postMessage") if p.get("text", "").startswith(":rotating_light:")]
        assert post["reply_broadcast"] is True
    finally:
        h.stop()


def test_still_not_done_after_the_poll_timeout(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """An instance still rebooting at BOT_POLL_TIMEOUT_SECONDS is reported as not done, and following stops."""
    fake_dbss.reboot_polls = 10_000
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05, bot_poll_timeout_seconds=0.5)
    try:
        card = reboot_and_wait(h)
        alert = final_reply(h, card, "is still not done after")
        assert f"<@{ALICE}>" in alert.text and "rebooting" in alert.text
        calls = len(fake_dbss.list_requests())
        time.sleep(0.3)
        assert len(fake_dbss.list_requests()) == calls, "no more polling once it has ended"
    finally:
        h.stop()


def test_follow_up_resumes_after_a_restart(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """A follow-up in flight when the bot stops is picked up by the next start and finished in the same thread."""
    fake_dbss.reboot_polls = 3
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=60)  # the first run never polls
    try:
        card = reboot_and_wait(h)
        eventually(
            lambda: any("DBSS accepted" in m.text for m in h.slack.thread(card.channel, card.ts)), what="accepted"
        )
        h.stop()
        left = StateStore(h.settings.bot_state_path)
        assert [f.instance_id for f in left.active_followups()] == [INSTANCE_ID]
        left.close()
        h.settings = h.settings.model_copy(update={"bot_poll_interval_seconds": 0.05})
        h.start()
        final_reply(h, card, "is back to *ACTIVE* after")
        assert h.bot.store.active_followups() == []
    finally:
        h.stop()


def test_second_approver_policy(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """With BOT_REQUIRE_SECOND_APPROVER the requester cannot confirm; another allowed user can, and both are named."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_require_second_approver=True)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        assert "Needs a second approver" in str(card.blocks)
        h.click("dbss_reboot_confirm", card=card, user=ALICE)
        assert "second approver is required" in h.wait_for_hook(count=1)
        h.drain()
        assert fake_dbss.reboot_requests() == []
        h.click("dbss_reboot_confirm", card=card, user=BOB)
        reply = final_reply(h, card, "DBSS accepted")
        assert f"Requested by <@{ALICE}>, approved by <@{BOB}>" in reply.text
        updated = fake_slack.messages[(card.channel, card.ts)]
        assert f"requested by <@{ALICE}>, approved by <@{BOB}>" in updated.text
        assert len(fake_dbss.reboot_requests()) == 1
    finally:
        h.stop()


def test_without_second_approver_only_the_requester_confirms(harness: Harness) -> None:
    """The default policy: Bob cannot confirm Alice's card (covered in depth in test_confirm)."""
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    assert "Only <@UALICE> can confirm" in str(card.blocks)


def test_cooldown_refuses_with_who_when_and_a_link(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """A second reboot within BOT_COOLDOWN_SECONDS is refused, naming who rebooted it, when, and the thread."""
    fake_dbss.reboot_polls = 0
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05, bot_cooldown_seconds=600)
    try:
        card = reboot_and_wait(h)
        final_reply(h, card, "is back to *ACTIVE*")
        h.command(INSTANCE_ID, user=BOB)
        text = h.wait_for_hook(count=1)
        assert "was rebooted by <@UALICE>" in text and "<!date^" in text
        assert f"https://acme.slack.com/archives/{card.channel}/p{card.ts.replace('.', '')}" in text
        assert len(fake_dbss.reboot_requests()) == 1
    finally:
        h.stop()


def test_no_cooldown_when_set_to_zero(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    fake_dbss.reboot_polls = 0
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05, bot_cooldown_seconds=0)
    try:
        card = reboot_and_wait(h)
        final_reply(h, card, "is back to *ACTIVE*")
        eventually(lambda: h.bot.store.current_lock(INSTANCE_ID) is None, what="the lock to go")
        h.command(INSTANCE_ID)
        assert h.wait_for_card(count=1).ts != card.ts  # the first card has lost its buttons
    finally:
        h.stop()


def test_a_deadline_reached_while_dbss_does_not_answer_gives_the_state_last_seen(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """DBSS stops answering list calls mid-follow-up: the follow-up still ends at its deadline, naming the state it
    last saw (not "unknown"), and says it was last seen."""
    fake_dbss.reboot_polls = 10_000
    h = Harness(
        tmp_path,
        fake_dbss,
        fake_slack,
        bot_poll_interval_seconds=0.1,
        bot_poll_timeout_seconds=2,
        dbss_timeout_seconds=5,
    )
    try:
        card = reboot_and_wait(h)
        eventually(
            lambda: any("rebooting" in m.text for m in h.slack.thread(card.channel, card.ts)), what="the first progress"
        )
        fake_dbss.delays["list"] = 4.0  # from now on no list answers before the deadline
        alert = final_reply(h, card, "is still not done after")
        assert "(last seen *ACTIVE* / task *rebooting*)" in alert.text, alert.text
    finally:
        fake_dbss.delays["list"] = 0.0
        h.stop()


@pytest.mark.parametrize("polls", [0, 2])
def test_a_reboot_never_seen_in_progress_is_not_called_rebooted(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, polls: int
) -> None:
    """DBSS accepted, but no list ever showed the instance busy (the reboot was quicker than a poll, or never
    began): after the settling polls the thread says it is ACTIVE and that the reboot was never seen, and the card
    does not say "Rebooted". Seen busy, the card says "Rebooted" as before."""
    fake_dbss.reboot_polls = polls
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05)
    try:
        card = reboot_and_wait(h)
        end = final_reply(h, card, "is back to *ACTIVE*")

        def card_line() -> str | None:
            with fake_slack.lock:
                text = str(fake_slack.messages[(card.channel, card.ts)].blocks[-1].get("text", {}).get("text", ""))
            return text if text.startswith(":white_check_mark:") else None

        line = eventually(card_line, what="the card's last line")
        if polls == 0:
            assert "never seen rebooting" in end.text and "uptime" in end.text
            assert "Rebooted" not in line and "never seen in progress" in line
        else:
            assert "never seen" not in end.text and line.startswith(":white_check_mark: Rebooted: back to *ACTIVE*")
    finally:
        h.stop()
