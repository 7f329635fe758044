"""User groups in the allow-list, and structured logs that share the correlation ID with thread and audit."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.logs import JsonFormatter
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, BOB, MALLORY, Harness, eventually


def test_user_group_members_may_reboot(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """BOT_ALLOWED_USERS=S… lets the group's members in (resolved once, cached) and keeps others out."""
    fake_slack.usergroups["SONCALL"] = [BOB]
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_users="SONCALL")
    try:
        assert "Looking up" in h.command(INSTANCE_ID, user=BOB).json()["text"]
        card = h.wait_for_card()
        h.click("dbss_reboot_confirm", card=card, user=BOB)
        eventually(lambda: fake_dbss.reboots_done, what="the reboot")
        for user in (ALICE, MALLORY, "SONCALL"):
            assert "allow-list" in h.command("f" * 32, user=user).json()["text"]
        calls = fake_slack.calls("usergroups.users.list")
        assert [c["usergroup"] for c in calls] == ["SONCALL"], "resolved once and cached"
    finally:
        h.stop()


def test_unknown_user_group_lets_nobody_in(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """A group Slack does not know (no_such_subteam) resolves to nobody: deny by default."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_users="SMISSING")
    try:
        assert "allow-list" in h.command(INSTANCE_ID, user=BOB).json()["text"]
    finally:
        h.stop()


def test_json_logs_carry_the_correlation_id_of_thread_and_audit(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Each event is one JSON line; the reboot's correlation ID is the same in logs, thread and audit trail."""
    caplog.set_level(logging.INFO)
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    harness.click("dbss_reboot_confirm", card=card)
    [reply] = harness.wait_for_thread(card)
    harness.drain()
    result = harness.bot.store.audit(instance_id=INSTANCE_ID)[-1]
    assert result.event == "reboot_result" and result.correlation_id
    assert f"ref `{result.correlation_id}`" in reply.text
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "bot.core.reboots"]
    accepted = [line for line in lines if line["event"] == "reboot_result"]
    assert accepted and accepted[0]["correlation_id"] == result.correlation_id
    assert accepted[0]["dbss_request_id"] == result.dbss_request_id and accepted[0]["outcome"] == "accepted"
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "good-token" not in text and "xoxb-test-token" not in text
