"""Members of the Slack user groups (S...) named in BOT_ALLOWED_USERS, cached and refreshed in the background."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class GroupDirectory:
    """`members()` never calls Slack: it answers from the cache and starts a refresh when the cache is old.

    usergroups.users.list is rate-limited (Tier 2), far too slow for the acknowledging path.
    """

    def __init__(
        self,
        client: WebClient,
        groups: Iterable[str],
        *,
        max_age_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._groups = tuple(sorted(set(groups)))
        self._max_age = max_age_seconds
        self._clock = clock
        self._members: frozenset[str] = frozenset()
        self._fetched_at: float | None = None
        self._refreshing = threading.Lock()

    def refresh(self) -> None:
        """Read every group's members now; a group that fails keeps its place empty and is logged."""
        members: set[str] = set()
        for group in self._groups:
            try:
                response = self._client.usergroups_users_list(usergroup=group)
                members.update(str(u) for u in response.get("users") or [])
            except SlackApiError as err:
                log.warning(
                    "could not read user group", extra={"usergroup": group, "slack_error": err.response.get("error")}
                )
        self._members = frozenset(members)
        self._fetched_at = self._clock()

    def members(self) -> frozenset[str]:
        stale = self._fetched_at is None or self._clock() - self._fetched_at > self._max_age
        if stale and self._groups and self._refreshing.acquire(blocking=False):

            def run() -> None:
                try:
                    self.refresh()
                finally:
                    self._refreshing.release()

            threading.Thread(target=run, name="usergroups-refresh", daemon=True).start()
        return self._members
