"""Type-ahead menus: the options of an instance menu too long for Slack's 100 (picker and modal)."""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

from slack_bolt import Ack, App

from bot.dbss.errors import DbssError
from bot.slack import messages
from bot.slack.listeners.common import Deps

log = logging.getLogger(__name__)

FRESH_SECONDS = 15.0  # one list answer serves a person's keystrokes for this long
ANSWER_WITHIN = 2.0  # Slack waits 3 s for options


def register(app: App, deps: Deps) -> None:
    app.options(messages.PICK_ACTION)(partial(on_options, deps))
    app.options(messages.MODAL_INSTANCE)(partial(on_options, deps))


def on_options(deps: Deps, ack: Ack, body: dict[str, Any]) -> None:
    """Matching instances by name or ID; only for people who may request reboots at all."""
    user = str((body.get("user") or {}).get("id") or "") if isinstance(body.get("user"), dict) else ""
    if deps.policy.user_refusal(user) is not None:
        ack(options=[])
        return
    query = body.get("value") if isinstance(body.get("value"), str) else ""
    try:
        instances = deps.listing.recent(FRESH_SECONDS, timeout=ANSWER_WITHIN)
    except (DbssError, FutureTimeout) as err:
        log.warning("no options: the instance list could not be read", extra={"error": type(err).__name__})
        ack(options=[])
        return
    ack(options=messages.matching_options(instances, str(query)[:100]))
