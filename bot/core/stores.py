"""The state store the settings ask for: SQLite alone, or SQLite with the shared state in Redis (REDIS_URL).

The bot and the break-glass console build it here, so the console honours the same used confirmations,
in-flight locks and cooldowns as every replica of the bot.
"""

from __future__ import annotations

from bot.config import Settings
from bot.core.store import StateStore


def open_store(settings: Settings) -> StateStore:
    """The store of BOT_STATE_PATH; with REDIS_URL, confirmations, locks, cooldowns and follow-ups are shared."""
    if settings.redis_url is None:
        return StateStore(settings.bot_state_path)
    from bot.core.redis_state import RedisBackedStore  # only replicas need the redis package loaded

    return RedisBackedStore.from_url(
        settings.bot_state_path,
        settings.redis_url.get_secret_value(),
        lease_seconds=max(3 * settings.bot_poll_interval_seconds, 1.0),
        # Held only while a message is being sent (a look-up and a post, each up to SLACK_TIMEOUT_SECONDS).
        outbox_lease_seconds=2 * settings.slack_timeout_seconds + 5,
    )
