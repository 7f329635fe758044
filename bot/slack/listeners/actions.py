"""Buttons and menus: the picker's choice, and the card's Confirm and Cancel.

A click is decided in the domain from scratch (token, age, clicker, channel) and used up once; everything the
people involved must see from then on (the card's line, the outcome, a private answer) goes through the outbox,
so no Slack failure can stand between a claimed confirmation and its DBSS call or its lock's release.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from slack_bolt import Ack, App, Respond

from bot.core.commands import RebootCommand, parse
from bot.core.reboots import (
    AlreadyUsed,
    BusyOnConfirm,
    Cancelled,
    Confirmed,
    CoolingDown,
    Decision,
    Expired,
    NeedsSecondApprover,
    NotRequester,
    Refused,
    new_correlation_id,
)
from bot.slack import announce, messages
from bot.slack.listeners.common import TS, Deps, privately, run_reporting, say_privately

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    app.action(messages.PICK_ACTION)(partial(on_pick, deps))
    app.action(messages.CONFIRM_ACTION)(partial(on_click, deps, "confirm"))
    app.action(messages.CANCEL_ACTION)(partial(on_click, deps, "cancel"))


def on_pick(deps: Deps, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
    ack()
    user = str((body.get("user") or {}).get("id") or "")
    channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
    selected = action.get("selected_option") or {}
    instance_id = str(selected.get("value") or "") if isinstance(selected, dict) else ""
    block_id = str(action.get("block_id") or "")
    thread = (
        block_id.removeprefix(messages.THREAD_BLOCK_PREFIX) if block_id.startswith(messages.THREAD_BLOCK_PREFIX) else ""
    )
    thread_ts = thread if TS.fullmatch(thread) else None  # the alert's thread, when picked from a shortcut
    correlation_id = new_correlation_id()
    job = partial(
        pick,
        deps,
        respond,
        user=user,
        channel=channel,
        instance_id=instance_id,
        thread_ts=thread_ts,
        correlation_id=correlation_id,
    )
    deps.in_background(correlation_id, privately(respond), job)


def pick(
    deps: Deps,
    respond: Respond,
    *,
    user: str,
    channel: str,
    instance_id: str,
    thread_ts: str | None,
    correlation_id: str,
) -> None:
    reply = parse(instance_id)  # the same checks as a typed ID: a forged value gets the same refusal
    if not isinstance(reply, RebootCommand):
        deps.refused(
            user=user,
            channel=channel,
            reason="picked value is not an instance ID",
            text=instance_id,
            correlation_id=correlation_id,
        )
        say_privately(respond, ":no_entry: That is not a DBSS instance ID. Nothing was done.")
        return
    if respond.response_url:
        respond(delete_original=True)
    deps.post_card(
        user=user,
        channel=channel,
        instance_id=reply.instance_id,
        correlation_id=correlation_id,
        tell=privately(respond),
        thread_ts=thread_ts,
    )


def on_click(
    deps: Deps,
    action_name: Literal["confirm", "cancel"],
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
) -> None:
    ack()
    container = body.get("container") or {}
    message = body.get("message") or {}
    clicker = str((body.get("user") or {}).get("id") or "")
    channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
    message_ts = str(container.get("message_ts") or message.get("ts") or "")
    thread_ts = str(message.get("thread_ts") or message_ts)
    token = action.get("value")
    blocks = message.get("blocks")
    click = Click(
        action=action_name,
        token=token if isinstance(token, str) else "",
        clicker=clicker,
        channel=channel,
        message_ts=message_ts,
        thread_ts=thread_ts,
        blocks=blocks if isinstance(blocks, list) else [],
        reference=new_correlation_id(),
    )
    deps.in_background(click.reference, privately(respond), partial(decide_and_act, deps, respond, click), now=True)


@dataclass(frozen=True, slots=True)
class Click:
    """One click on a card's button, as the payload described it."""

    action: Literal["confirm", "cancel"]
    token: str
    clicker: str
    channel: str
    message_ts: str
    thread_ts: str
    blocks: list[dict[str, Any]]
    reference: str


def decide_and_act(deps: Deps, respond: Respond, click: Click) -> None:
    decision = deps.service.decide(
        token=click.token, clicker=click.clicker, channel=click.channel, thread_ts=click.thread_ts, action=click.action
    )
    answer = partial(deps.reply, f"{click.reference}:answer", respond=respond, to=click.clicker)
    match decision:
        case Refused(reason=reason):
            answer(text=f":no_entry: {messages.escape(reason)}")
            return
        case NotRequester():
            answer(text=messages.not_requester(decision))
            return
        case NeedsSecondApprover():
            answer(text=messages.needs_second_approver(decision))
            return
        case AlreadyUsed():
            answer(text=":information_source: This card was already answered. Nothing more was done.")
            return
    confirmation = decision.confirmation
    anchor = announce.card_anchor(
        confirmation.nonce if confirmation is not None else click.reference,
        channel=click.channel,
        card_ts=click.message_ts,
        thread_ts=click.thread_ts,
        blocks=[b for b in click.blocks if isinstance(b, dict)],
    )
    try:  # the card's line: nothing here may stand between a claimed confirmation and its DBSS call
        line = messages.decision_line(decision)
        deps.outbox.put([anchor, announce.anchored_line(anchor, line, step=_step(decision))])
        if isinstance(decision, Expired):
            answer(text=line)
    except Exception:
        log.exception("could not write the card's line; going on", extra={"correlation_id": click.reference})
    if isinstance(decision, Confirmed):
        execute = partial(
            deps.service.execute,
            decision,
            thread_ts=click.thread_ts,
            announce=partial(announce.outcome, anchor, decision),
        )
        deps.run_reboot(partial(run_reporting, click.reference, privately(respond), execute))


def _step(decision: Decision) -> str:
    match decision:
        case Confirmed():
            return "confirmed"
        case Cancelled():
            return "cancelled"
        case Expired():
            return "expired"
        case BusyOnConfirm() | CoolingDown():
            return "refused"
    return "other"
