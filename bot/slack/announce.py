"""The outbox messages that tell people what happened: the thread reply, the card's line, private answers.

Each has a key that says what it is (`<ref>:outcome`, `<ref>:card:...`), so writing it twice sends it once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.core.follow import Ending
from bot.core.outbox import OutboxMessage
from bot.core.reboots import Accepted, Confirmed, Interrupted, Outcome
from bot.core.store import FollowUp
from bot.slack import messages

Blocks = list[dict[str, Any]]


def card_key(correlation_id: str) -> str:
    return f"{correlation_id}:card"


def progress_key(correlation_id: str) -> str:
    return f"{correlation_id}:progress"


def card_anchor(
    correlation_id: str, *, channel: str, card_ts: str, thread_ts: str | None, blocks: Blocks
) -> OutboxMessage:
    """The card, posted outside the outbox, named so that its updates can find it (and its blocks)."""
    return OutboxMessage(
        key=card_key(correlation_id),
        kind="anchor",
        channel=channel,
        correlation_id=correlation_id,
        thread_ts=thread_ts,
        ts=card_ts,
        blocks=messages.resolved_card(blocks, "")[:-1],  # the card without its buttons
        state="sent",
    )


def card_line(correlation_id: str, *, channel: str, thread_ts: str | None, line: str, step: str) -> OutboxMessage:
    """The card, its buttons gone, with a line saying where the reboot stands. The deliverer builds the blocks
    from the card's anchor when it sends the update, so writing this never needs to read the store."""
    return OutboxMessage(
        key=f"{card_key(correlation_id)}:{step}",
        kind="update",
        channel=channel,
        correlation_id=correlation_id,
        thread_ts=thread_ts,
        target=card_key(correlation_id),
        text=line,
    )


def anchored_line(anchor: OutboxMessage, line: str, *, step: str) -> OutboxMessage:
    cid = anchor.correlation_id or ""
    return card_line(cid, channel=anchor.channel, thread_ts=anchor.thread_ts, line=line, step=step)


def private(
    key: str, *, response_url: str | None, recipient: str, text: str, blocks: Blocks | None = None
) -> OutboxMessage:
    """An answer only `recipient` sees: through the response_url, or a direct message if that fails."""
    return OutboxMessage(
        key=key,
        kind="respond",
        channel="",
        target=response_url,
        text=text,
        blocks=blocks,
        must_see=True,
        recipient=recipient,
    )


def outcome(anchor: OutboxMessage, decision: Confirmed, result: Outcome) -> list[OutboxMessage]:
    """What DBSS answered: in the thread (the requester is told directly if that fails), and on the card."""
    c = decision.confirmation
    who = f"Requested by {messages.mention(c.requester)}"
    if decision.second_approver:
        who += f", approved by {messages.mention(decision.by)}"
    text = f"{messages.outcome_text(result, c.target)}\n{who}, ref `{c.nonce}`."
    if isinstance(result, Accepted):
        text += " I will follow it here until it is healthy again."
    return [
        OutboxMessage(
            key=f"{c.nonce}:outcome",
            kind="post",
            channel=anchor.channel,
            correlation_id=c.nonce,
            thread_ts=anchor.thread_ts,
            text=text,
            must_see=True,
            recipient=c.requester,
        ),
        anchored_line(anchor, messages.outcome_line(result, decision), step="outcome"),
    ]


def interrupted(found: Interrupted) -> list[OutboxMessage]:
    """What a restarted bot tells a thread whose outcome it never reported."""
    e = found.entry
    cid = e.correlation_id or ""
    said = [
        OutboxMessage(
            key=f"{cid}:outcome",
            kind="post",
            channel=e.channel or "",
            correlation_id=cid,
            thread_ts=e.thread_ts,
            text=messages.interrupted_text(found),
            must_see=True,
            recipient=e.user_id,
        )
    ]
    line = messages.interrupted_line(found)
    said.append(card_line(cid, channel=e.channel or "", thread_ts=e.thread_ts, line=line, step="outcome"))
    return said


def progress(followup: FollowUp, text: str) -> OutboxMessage:
    """The follow-up's progress message: posted once, then updated in place."""
    key = progress_key(followup.correlation_id)
    if followup.progress_ts is None:
        return OutboxMessage(
            key=key,
            kind="post",
            channel=followup.channel,
            correlation_id=followup.correlation_id,
            thread_ts=followup.thread_ts,
            text=text,
        )
    legacy = followup.progress_ts != key  # a follow-up started before the outbox holds the message's ts
    return OutboxMessage(
        key=f"{key}:{followup.polls}",
        kind="update",
        channel=followup.channel,
        correlation_id=followup.correlation_id,
        thread_ts=followup.thread_ts,
        target=None if legacy else key,
        ts=followup.progress_ts if legacy else None,
        text=text,
    )


def ending(followup: FollowUp, end: Ending) -> list[OutboxMessage]:
    """The follow-up's end: its progress message closed, the ending in the thread (an alert unless healthy, also
    shown in the channel), and the card's last line."""
    said: list[OutboxMessage] = []
    if followup.progress_ts is not None:
        final = progress(followup, messages.progress_final_text(followup, end))
        said.append(replace(final, key=f"{progress_key(followup.correlation_id)}:final"))
    said.append(
        OutboxMessage(
            key=f"{followup.correlation_id}:end",
            kind="post",
            channel=followup.channel,
            correlation_id=followup.correlation_id,
            thread_ts=followup.thread_ts,
            text=messages.finished_text(followup, end),
            broadcast=end.kind != "healthy",
            must_see=True,
            recipient=followup.requester,
        )
    )
    said.append(
        card_line(
            followup.correlation_id,
            channel=followup.channel,
            thread_ts=followup.thread_ts,
            line=messages.ending_line(followup, end),
            step="end",
        )
    )
    return said
