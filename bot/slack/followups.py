"""Reporting follow-ups in the card's thread: one progress message updated in place, then the ending."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.follow import Ending, Progress
from bot.core.store import FollowUp
from bot.slack import messages

log = logging.getLogger(__name__)


class SlackFollowUpNotifier:
    def __init__(self, client: WebClient) -> None:
        self._client = client

    def progress(self, followup: FollowUp, progress: Progress) -> str | None:
        text = messages.progress_text(followup, progress)
        try:
            if followup.progress_ts is None:
                posted = self._client.chat_postMessage(
                    channel=followup.channel, thread_ts=followup.thread_ts, text=text
                )
                return str(posted["ts"])
            self._client.chat_update(channel=followup.channel, ts=followup.progress_ts, text=text)
        except SlackApiError as err:
            log.warning(
                "could not update follow-up progress",
                extra={"correlation_id": followup.correlation_id, "slack_error": err.response.get("error")},
            )
        return followup.progress_ts

    def finished(self, followup: FollowUp, ending: Ending) -> None:
        try:
            if followup.progress_ts is not None:
                self._client.chat_update(
                    channel=followup.channel,
                    ts=followup.progress_ts,
                    text=messages.progress_final_text(followup, ending),
                )
            self._client.chat_postMessage(
                channel=followup.channel,
                thread_ts=followup.thread_ts,
                text=messages.finished_text(followup, ending),
                reply_broadcast=ending.kind != "healthy",  # an alert is also shown in the channel
            )
        except SlackApiError as err:
            log.error(
                "could not report the end of a follow-up",
                extra={"correlation_id": followup.correlation_id, "slack_error": err.response.get("error")},
            )
