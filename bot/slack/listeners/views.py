"""The global shortcut's modal: checked as the slash command is, before it closes; then the card."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.core.commands import RebootCommand, parse
from bot.core.reboots import new_correlation_id
from bot.slack import messages
from bot.slack.listeners.common import Deps

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    app.view(messages.MODAL_CALLBACK)(partial(on_modal_submit, deps))


def _value(values: dict[str, Any], block: str, field: str) -> str:
    element = (values.get(block) or {}).get(block) or {}
    if not isinstance(element, dict):
        return ""
    value = element.get(field)
    if field == "selected_option":
        value = value.get("value") if isinstance(value, dict) else None
    return str(value or "")


def on_modal_submit(deps: Deps, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
    policy = deps.policy
    user = str((body.get("user") or {}).get("id") or "")
    values = (view.get("state") or {}).get("values") or {}
    instance_id = _value(values, messages.MODAL_INSTANCE, "selected_option")
    channel = _value(values, messages.MODAL_CHANNEL, "selected_conversation")
    reason = " ".join(_value(values, messages.MODAL_REASON, "value").split())[:300] or None
    errors: dict[str, str] = {}
    if parse(instance_id) != RebootCommand(instance_id):
        errors[messages.MODAL_INSTANCE] = "Choose an instance from the list."
    refusal = policy.user_refusal(user)
    if refusal is not None:
        errors[messages.MODAL_INSTANCE] = refusal[:150]
    elif not channel:
        errors[messages.MODAL_CHANNEL] = "Choose the channel for the confirmation card."
    elif policy.refusal(user, channel) is not None:
        errors[messages.MODAL_CHANNEL] = "Reboots are not enabled in that channel (BOT_ALLOWED_CHANNELS)."
    if errors:
        ack(response_action="errors", errors=errors)
        return
    ack()
    correlation_id = new_correlation_id()
    tell = partial(tell_after_modal, deps, channel, user)
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


def tell_after_modal(deps: Deps, channel: str, user: str, text: str) -> None:
    try:
        deps.client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as err:
        log.warning("could not answer privately after the modal", extra={"slack_error": err.response.get("error")})
