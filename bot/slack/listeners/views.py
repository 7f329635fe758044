"""The global shortcut's modal: checked as the slash command is, before it closes; then the card.

The channel select has `response_url_enabled`, so the submission carries a response_url for the chosen channel:
every answer after the modal closes goes there (or, if Slack refuses it, to the person directly), whether or
not the bot is a member of that channel.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from slack_bolt import Ack, App

from bot.core.commands import RebootCommand, parse
from bot.core.reboots import new_correlation_id
from bot.slack import announce, messages
from bot.slack.listeners.common import Deps, state_value

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    app.view(messages.MODAL_CALLBACK)(partial(on_modal_submit, deps))


def _response_url(body: dict[str, Any]) -> str | None:
    for entry in body.get("response_urls") or []:
        if isinstance(entry, dict) and entry.get("block_id") == messages.MODAL_CHANNEL:
            url = entry.get("response_url")
            return url if isinstance(url, str) and url else None
    return None


def on_modal_submit(deps: Deps, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
    policy = deps.policy
    user = str((body.get("user") or {}).get("id") or "")
    state = view.get("state")
    values: dict[str, Any] = {}
    if isinstance(state, dict) and isinstance(state.get("values"), dict):
        values = state["values"]
    instance_id = state_value(values, messages.MODAL_INSTANCE, "selected_option")
    channel = state_value(values, messages.MODAL_CHANNEL, "selected_conversation")
    reason = " ".join(state_value(values, messages.MODAL_REASON, "value").split())[:300] or None
    errors: dict[str, str] = {}
    refusal = None
    if parse(instance_id) != RebootCommand(instance_id):
        errors[messages.MODAL_INSTANCE] = "Choose an instance from the list."
    refusal = policy.user_refusal(user)
    if refusal is not None:
        errors[messages.MODAL_INSTANCE] = refusal[:150]
    elif not channel:
        errors[messages.MODAL_CHANNEL] = "Choose the channel for the confirmation card."
    elif policy.refusal(user, channel) is not None:
        refusal = "Reboots are not enabled in that channel (BOT_ALLOWED_CHANNELS)."
        errors[messages.MODAL_CHANNEL] = refusal
    correlation_id = new_correlation_id()
    if errors:
        ack(response_action="errors", errors=errors)
        if refusal is not None:
            record = partial(
                deps.refused,
                user=user,
                channel=channel,
                reason=refusal,
                text=f"modal: {instance_id}",
                correlation_id=correlation_id,
            )
            deps.in_background(correlation_id, partial(_log_only, correlation_id), record)
        return
    ack()
    tell = partial(tell_after_modal, deps, _response_url(body), user, correlation_id)
    job = partial(
        deps.post_card,
        user=user,
        channel=channel,
        instance_id=instance_id,
        correlation_id=correlation_id,
        tell=tell,
        reason=reason,
    )
    deps.in_background(correlation_id, tell, job)


def tell_after_modal(deps: Deps, response_url: str | None, user: str, correlation_id: str, text: str) -> None:
    """After the modal has closed: through the channel's response_url, or a direct message (the outbox decides)."""
    deps.outbox.put(
        [
            announce.private(
                f"{correlation_id}:modal:{new_correlation_id()}", response_url=response_url, recipient=user, text=text
            )
        ]
    )


def _log_only(correlation_id: str, text: str) -> None:
    log.warning("modal: %s", text, extra={"correlation_id": correlation_id})
