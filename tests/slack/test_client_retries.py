"""The bot's Slack clients re-send nothing on their own: a post whose connection was cut after Slack stored it is
posted once. Only the deliverer (bot/slack/delivery.py, which looks before posting again) and the listeners decide.

The fake Slack carries the call out, then closes the connection unanswered ("reset_after").
"""

from __future__ import annotations

import time
from typing import Any

from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from tests.conftest import INSTANCE_ID
from tests.harness import INCIDENTS, Harness, eventually


def test_a_card_post_cut_after_slack_stored_it_is_posted_once(harness: Harness) -> None:
    """The card's chat.postMessage reaches Slack, which stores it, and the connection is cut before the answer.
    The client sends it once (slack_sdk's default handler would have posted a second card); the bot finds it by
    its metadata key, records it as posted, and tells the person nothing false."""
    harness.slack.fault("chat.postMessage", "reset_after")
    harness.command(INSTANCE_ID)
    card = harness.wait_for_card()
    harness.drain()
    assert len(harness.slack.calls("chat.postMessage")) == 1
    assert len(harness.slack.posted(INCIDENTS, "asks to reboot")) == 1
    assert [e.thread_ts for e in harness.bot.store.audit() if e.event == "card_posted"] == [card.ts]
    assert harness.slack.hooks() == []
    assert harness.dbss.reboot_requests() == []


def test_no_slack_client_of_the_bot_retries_a_connection_error(harness: Harness) -> None:
    """The Web API clients the bot builds (listeners', Bolt's per request, the deliverer's) carry no
    connection-error handler; Slack's 429 (a call Slack did not carry out) is the only one retried, by the
    listeners' client."""
    bot = harness.bot
    clients: dict[str, Any] = {"listeners": bot.app.client, "deliverer": bot.deliverer._client}
    for name, client in clients.items():
        assert not any(isinstance(h, ConnectionErrorRetryHandler) for h in client.retry_handlers), name
    assert [type(h).__name__ for h in bot.app.client.retry_handlers] == ["RateLimitErrorRetryHandler"]
    assert bot.deliverer._client.retry_handlers == []
    assert bot.deliverer._webhook("https://hooks.slack.com/actions/T1/1/x").retry_handlers == []


def test_a_private_answer_cut_after_slack_stored_it_is_sent_once(harness: Harness) -> None:
    """`/dbss-reboot list` answers through the response_url; Slack shows it and the connection is cut before the
    answer. The list is sent once (Bolt's own respond() would have sent it again); the bot, which never got an
    answer, says something went wrong, with a reference."""
    harness.slack.fault("response_url", "reset_after", when=lambda body: "audit-prod-1" in str(body.get("text")))
    harness.command("list")

    def lists() -> list[str]:
        return [t for t in harness.slack.hook_texts() if "audit-prod-1" in t]

    eventually(lists, what="the list")
    harness.drain()
    time.sleep(0.5)
    assert len(lists()) == 1
    assert [t for t in harness.slack.hook_texts() if t not in lists()] == [
        eventually(lambda: next((t for t in harness.slack.hook_texts() if "Something went wrong" in t), None))
    ]
