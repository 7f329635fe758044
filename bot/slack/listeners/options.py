"""Type-ahead menus: the options of an instance menu too long for Slack's 100 (picker and modal)."""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

from slack_bolt import Ack, App

from bot.dbss.errors import DbssError
from bot.slack import messages
from bot.slack.listeners.common import Deps, state_value

log = logging.getLogger(__name__)

FRESH_SECONDS = 15.0  # one list answer serves a person's keystrokes for this long
ANSWER_WITHIN = 2.0  # Slack waits 3 s for options


def register(app: App, deps: Deps) -> None:
    app.options(messages.PICK_ACTION)(partial(on_options, deps))
    app.options(messages.MODAL_INSTANCE)(partial(on_options, deps))


def on_options(deps: Deps, ack: Ack, body: dict[str, Any]) -> None:
    """Matching instances by name or ID, scoped as the static menus are: only for people who may request reboots;
    in a channel (the picker), nothing where they may not reboot and only the regions that channel may reach; in
    the modal, the regions of the channel chosen there (none chosen yet: every region, as the modal's own menu,
    and its submission is checked)."""
    user = str((body.get("user") or {}).get("id") or "") if isinstance(body.get("user"), dict) else ""
    channel = _channel(body)
    refusal = deps.policy.user_refusal(user) if channel is None else deps.policy.refusal(user, channel)
    if refusal is not None:
        ack(options=[])
        return
    query = body.get("value") if isinstance(body.get("value"), str) else ""
    try:
        instances = deps.listing.recent(FRESH_SECONDS, timeout=ANSWER_WITHIN)
    except (DbssError, FutureTimeout) as err:
        log.warning("no options: the instance list could not be read", extra={"error": type(err).__name__})
        ack(options=[])
        return
    if channel is None:
        channel = state_value(_state(body), messages.MODAL_CHANNEL, "selected_conversation") or None
    if channel is not None:
        instances = deps.reachable(instances, channel)
    ack(options=messages.matching_options(instances, str(query)[:100]))


def _channel(body: dict[str, Any]) -> str | None:
    """The channel a picker's type-ahead is typed in (None in a modal, which belongs to no channel)."""
    channel = body.get("channel")
    if isinstance(channel, dict) and isinstance(channel.get("id"), str) and channel["id"]:
        return str(channel["id"])
    container = body.get("container")
    if isinstance(container, dict) and isinstance(container.get("channel_id"), str) and container["channel_id"]:
        return str(container["channel_id"])
    return None


def _state(body: dict[str, Any]) -> dict[str, Any]:
    view = body.get("view")
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    return values if isinstance(values, dict) else {}
