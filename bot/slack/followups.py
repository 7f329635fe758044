"""Reporting follow-ups in the card's thread, through the outbox: one progress message updated in place, the
ending in the thread, and the card's last line."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.follow import Ending, Progress
from bot.core.outbox import Outbox, OutboxMessage
from bot.core.store import FollowUp
from bot.slack import announce, messages


class SlackFollowUpNotifier:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def progress(self, followup: FollowUp, progress: Progress) -> str | None:
        """Queue the progress message (or its update); its reference is the message's outbox key."""
        self._outbox.put([announce.progress(followup, messages.progress_text(followup, progress))])
        return followup.progress_ts or announce.progress_key(followup.correlation_id)

    def finished(self, followup: FollowUp, ending: Ending) -> Sequence[OutboxMessage]:
        """The messages that end a follow-up; the follower writes them with its audit entry."""
        return announce.ending(followup, ending)
