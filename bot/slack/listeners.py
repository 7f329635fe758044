"""The Slack listeners: acknowledge at once, decide in the domain, do slow work on the bot's own pool."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Literal

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.commands import ShowHelp, Unparseable, parse
from bot.core.reboots import (
    AlreadyUsed,
    Confirmed,
    Expired,
    NotRequester,
    Offer,
    RebootService,
    Refused,
    new_correlation_id,
)
from bot.slack import messages

log = logging.getLogger(__name__)

# Errors of chat.postMessage that mean "the bot cannot post here" rather than "something broke".
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action"})


def _say_privately(respond: Respond, text: str) -> None:
    """An ephemeral message through response_url, which works even where the bot is not a member."""
    response = respond(text=text, response_type="ephemeral", replace_original=False)
    if response.status_code != 200:
        log.warning("response_url answered HTTP %s", response.status_code)


def register(app: App, *, service: RebootService, work: Executor) -> None:
    """Wire the slash command and the card's buttons onto the app."""
    policy = service.policy

    def in_background(correlation_id: str, respond: Respond, job: Callable[[], None]) -> None:
        """Run slow work off the acknowledging path; an unexpected error is logged and told to the person."""

        def run() -> None:
            try:
                job()
            except Exception:
                log.exception("unexpected error (ref %s)", correlation_id)
                try:
                    _say_privately(
                        respond,
                        f":boom: Something went wrong on the bot's side (ref `{correlation_id}`). Check the card's "
                        "thread and the audit trail before trying again; the platform team has the details in the "
                        "logs.",
                    )
                except Exception:
                    log.exception("could not tell the person about the error (ref %s)", correlation_id)

        work.submit(run)

    @app.command("/dbss-reboot")
    def on_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user = str(command.get("user_id") or "")
        channel = str(command.get("channel_id") or "")
        text = str(command.get("text") or "")
        correlation_id = new_correlation_id()
        parsed = parse(text)
        if isinstance(parsed, ShowHelp):
            ack(response_type="ephemeral", text=messages.help_text(may_reboot_here=policy.refusal(user, channel)))
            return
        refusal = policy.refusal(user, channel)
        if refusal is None and isinstance(parsed, Unparseable):
            refusal = parsed.reason
        if refusal is not None:
            ack(response_type="ephemeral", text=f":no_entry: {messages.escape(refusal)}")
            reason = refusal
            in_background(
                correlation_id,
                respond,
                lambda: service.refuse_request(
                    user=user, channel=channel, reason=reason, text=text, correlation_id=correlation_id
                ),
            )
            return
        ack()
        assert not isinstance(parsed, Unparseable)
        instance_id = parsed.instance_id

        def post_card() -> None:
            result = service.offer(user=user, channel=channel, instance_id=instance_id, correlation_id=correlation_id)
            if not isinstance(result, Offer):
                _say_privately(respond, messages.offer_refusal(result))
                return
            try:
                posted = client.chat_postMessage(
                    channel=channel, text=messages.card_text(result), blocks=messages.card(result)
                )
            except SlackApiError as err:
                error = str(err.response.get("error", "unknown_error"))
                if error not in CANNOT_POST:
                    raise
                service.store.record(
                    "card_failed", correlation_id=correlation_id, user_id=user, instance_id=instance_id,
                    channel=channel, outcome="not_posted", detail=error,
                )  # fmt: skip
                _say_privately(respond, messages.cannot_post_here(error))
                return
            service.card_posted(result, thread_ts=str(posted["ts"]))

        in_background(correlation_id, respond, post_card)

    def on_click(action_name: Literal["confirm", "cancel"]) -> Callable[..., None]:
        def listener(
            ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
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
            original_blocks: list[dict[str, Any]] = blocks if isinstance(blocks, list) else []

            def decide_and_act() -> None:
                decision = service.decide(
                    token=token if isinstance(token, str) else "",
                    clicker=clicker,
                    channel=channel,
                    thread_ts=thread_ts,
                    action=action_name,
                )
                if isinstance(decision, Refused):
                    _say_privately(respond, f":no_entry: {messages.escape(decision.reason)}")
                    return
                if isinstance(decision, NotRequester):
                    _say_privately(respond, messages.not_requester(decision))
                    return
                if isinstance(decision, AlreadyUsed):
                    _say_privately(
                        respond, ":information_source: This card was already answered. Nothing more was done."
                    )
                    return
                client.chat_update(
                    channel=channel,
                    ts=message_ts,
                    text=messages.decision_line(decision),
                    blocks=messages.resolved_card(original_blocks, messages.decision_line(decision)),
                )
                if isinstance(decision, Expired):
                    _say_privately(respond, messages.decision_line(decision))
                if not isinstance(decision, Confirmed):
                    return
                outcome = service.execute(decision, thread_ts=thread_ts)
                c = decision.confirmation
                text = (
                    f"{messages.outcome_text(outcome)}\nRequested by {messages.mention(c.requester)}, ref `{c.nonce}`."
                )
                try:
                    client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
                except SlackApiError as err:  # the outcome is in the audit trail; make sure the person sees it too
                    log.warning("could not post the outcome in the thread: %s", err.response.get("error"))
                    _say_privately(respond, text)

            in_background(new_correlation_id(), respond, decide_and_act)

        return listener

    app.action(messages.CONFIRM_ACTION)(on_click("confirm"))
    app.action(messages.CANCEL_ACTION)(on_click("cancel"))

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error in a listener", exc_info=error)
