"""The state store the settings ask for: SQLite alone, PostgreSQL (DATABASE_URL) or Redis (REDIS_URL) shared by
replicas. Each is the store contract of bot/core/contract.py.

The bot and the break-glass console build it here, so the console honours the same used confirmations,
in-flight locks and cooldowns as every replica of the bot.
"""

from __future__ import annotations

import logging

from bot.config import Settings
from bot.core.contract import Store
from bot.core.store import StateStore

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """The store of BOT_STATE_PATH; with DATABASE_URL or REDIS_URL, everything replicas share lives there."""
    lease_seconds = max(3 * settings.bot_poll_interval_seconds, 1.0)
    # Held only while a message is being sent (a look-up and a post, each up to SLACK_TIMEOUT_SECONDS).
    outbox_lease_seconds = 2 * settings.slack_timeout_seconds + 5
    if settings.database_url is not None:
        if settings.redis_url is not None:
            raise ValueError("set DATABASE_URL or REDIS_URL, not both: the shared state lives in one place")
        from bot.core.postgres_state import PostgresStore  # only replicas on PostgreSQL need psycopg loaded

        return PostgresStore(
            settings.database_url.get_secret_value(),
            lease_seconds=lease_seconds,
            outbox_lease_seconds=outbox_lease_seconds,
        )
    if settings.redis_url is None:
        return StateStore(settings.bot_state_path)
    from bot.core.redis_state import RedisBackedStore  # only replicas need the redis package loaded

    store = RedisBackedStore.from_url(
        settings.bot_state_path,
        settings.redis_url.get_secret_value(),
        lease_seconds=lease_seconds,
        outbox_lease_seconds=outbox_lease_seconds,
    )
    for problem in store.forgetful():
        log.warning("Redis may forget the bot's state: %s", problem)
    return store
