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

    usergroups.users.list is rate-limited (Tier 2), far too slow for the acknowledging path. A group whose
    refresh fails keeps its last good membership (never wider: a failure adds no one, and a transient error
    must not lock the on-call group out), and the refresh is tried again after `retry_seconds`.
    """

    def __init__(
        self,
        client: WebClient,
        groups: Iterable[str],
        *,
        max_age_seconds: float = 300.0,
        retry_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._groups = tuple(sorted(set(groups)))
        self._max_age = max_age_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._by_group: dict[str, frozenset[str]] = {}
        self._members: frozenset[str] = frozenset()
        self._next_refresh: float | None = None
        self._refreshing = threading.Lock()

    def refresh(self) -> None:
        """Read every group's members now; a group that fails keeps what it had."""
        failed = False
        for group in self._groups:
            try:
                response = self._client.usergroups_users_list(usergroup=group)
                self._by_group[group] = frozenset(str(u) for u in response.get("users") or [])
            except Exception as err:  # a network error must not end the refreshing, nor empty the group
                failed = True
                error = err.response.get("error") if isinstance(err, SlackApiError) else type(err).__name__
                log.warning(
                    "could not read user group; keeping its last known members",
                    extra={"usergroup": group, "slack_error": error, "kept": len(self._by_group.get(group, ()))},
                )
        self._members = frozenset().union(*self._by_group.values()) if self._by_group else frozenset()
        self._next_refresh = self._clock() + (self._retry if failed else self._max_age)

    @property
    def next_refresh(self) -> float | None:
        """When (on the directory's clock) `members()` starts the next refresh; None before the first."""
        return self._next_refresh

    def members(self) -> frozenset[str]:
        due = self._next_refresh is None or self._clock() >= self._next_refresh
        if due and self._groups and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_in_background, name="usergroups-refresh", daemon=True).start()
        return self._members

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("user group refresh failed")
        finally:
            self._refreshing.release()
