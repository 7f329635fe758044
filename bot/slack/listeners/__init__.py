"""The Slack listeners, one module per surface: commands, actions (buttons, menus), shortcuts, views (modals),
options (type-ahead menus).

Each acknowledges at once, decides in the domain and does slow work on the bot's own pools.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot.slack.listeners import actions, commands, options, shortcuts, views
from bot.slack.listeners.common import Deps

log = logging.getLogger(__name__)

__all__ = ["Deps", "register"]


def register(app: App, deps: Deps) -> None:
    app.use(deps.acks_first)
    commands.register(app, deps)
    actions.register(app, deps)
    shortcuts.register(app, deps)
    views.register(app, deps)
    options.register(app, deps)
    app.error(_on_error)


def _on_error(error: Exception, body: dict[str, Any]) -> None:
    log.error("unhandled error in a listener", exc_info=error)
