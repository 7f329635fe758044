"""The DBSS and IAM clients the bot builds (bot/dbss/__init__.py: build_client) send each request once.

httpx never re-sends a request on its own (its transport's `retries`, 0 by default, would only ever repeat a
connection attempt), and the bot gives it none: a reboot that timed out after it was sent is "outcome unknown",
an IAM login that timed out leaves the reboot not sent. The simulator is made slower than the client's timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.dbss import build_client
from bot.dbss.errors import DbssNotSent, DbssOutcomeUnknown
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import Harness

IAM_PATH = "/v3/auth/tokens"
IAM = {"dbss_iam_domain": "acme", "dbss_iam_user": "oncall-bot", "dbss_iam_password": "correct horse battery staple"}


def settings(fake: FakeDbss, **values: Any) -> Settings:
    given: dict[str, Any] = {
        "dbss_project_id": PROJECT_ID,
        "dbss_endpoint": fake.url,
        "dbss_iam_endpoint": fake.url,
        "dbss_timeout_seconds": 0.5,
        "bot_allowed_users": "U1",
        **values,
    }
    return Settings(_env_file=None, **given)


def test_a_reboot_that_timed_out_was_sent_once(fake_dbss: FakeDbss) -> None:
    """DBSS takes longer than DBSS_TIMEOUT_SECONDS to answer the reboot: outcome unknown, one request."""
    fake_dbss.delays["reboot"] = 1.5
    with build_client(settings(fake_dbss, dbss_auth_token="good-token")) as client, pytest.raises(DbssOutcomeUnknown):
        client.reboot(INSTANCE_ID)
    assert len(fake_dbss.reboot_requests()) == 1


def test_an_iam_login_that_timed_out_was_sent_once_and_the_reboot_not_at_all(fake_dbss: FakeDbss) -> None:
    """IAM takes longer than the timeout to issue the token: one login request, and the reboot was never sent."""
    fake_dbss.delays["iam"] = 1.5
    with build_client(settings(fake_dbss, **IAM)) as client, pytest.raises(DbssNotSent):
        client.reboot(INSTANCE_ID)
    assert len(fake_dbss.requests_to(IAM_PATH)) == 1
    assert fake_dbss.reboot_requests() == []


def test_a_slow_iam_is_told_as_a_reboot_not_sent(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """Through the bot, IAM slower than DBSS_TIMEOUT_SECONDS: each operation logs in once (the card's list, then
    the reboot), and the thread says the reboot was not sent and nothing was rebooted."""
    fake_dbss.delays["iam"] = 3.0  # the harness's DBSS timeout is 2 s
    h = Harness(tmp_path, fake_dbss, fake_slack, dbss_auth_token=None, dbss_iam_endpoint=fake_dbss.url, **IAM)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        assert "could not be read" in str(card.blocks)
        h.click("dbss_reboot_confirm", card=card)
        [reply] = h.wait_for_thread(card)
        assert "was not sent" in reply.text and "Nothing was rebooted" in reply.text, reply.text
        assert fake_dbss.reboot_requests() == []
        assert len(fake_dbss.requests_to(IAM_PATH)) == 2
    finally:
        h.stop()
