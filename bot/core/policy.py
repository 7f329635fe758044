"""Who may reboot, and where: deny by default."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _nobody() -> frozenset[str]:
    return frozenset()


def _unscoped() -> Mapping[str, frozenset[str]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """An allow-list of Slack user IDs and user-group IDs (empty: nobody), and of channels (empty: any).

    `group_members` answers from a cache and never blocks: it is called on the acknowledging path.
    `channel_regions` (BOT_CHANNEL_TARGETS): a channel named there reaches only its regions; others reach all.
    """

    allowed_users: frozenset[str]
    allowed_channels: frozenset[str]
    group_members: Callable[[], frozenset[str]] = field(default=_nobody)
    channel_regions: Mapping[str, frozenset[str]] = field(default_factory=_unscoped)

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(entry for entry in self.allowed_users if entry.startswith("S"))

    def is_allowed_user(self, user_id: str) -> bool:
        if not user_id:
            return False
        if user_id in self.allowed_users and not user_id.startswith("S"):
            return True
        return bool(self.groups) and user_id in self.group_members()

    def user_refusal(self, user_id: str) -> str | None:
        if self.is_allowed_user(user_id):
            return None
        return (
            "You are not on this bot's reboot allow-list. Ask the platform team to add your Slack user ID "
            f"({user_id or 'unknown'}) or one of your user groups to BOT_ALLOWED_USERS, or ask someone who is on it."
        )

    def refusal(self, user_id: str, channel_id: str) -> str | None:
        """Why this user may not reboot in this channel, or None when they may."""
        refusal = self.user_refusal(user_id)
        if refusal is not None:
            return refusal
        if self.allowed_channels and channel_id not in self.allowed_channels:
            return (
                "Reboots are not enabled in this channel. Use one of the incident channels listed in "
                "BOT_ALLOWED_CHANNELS, or ask the platform team to add this one."
            )
        return None

    def region_refusal(self, channel_id: str, region: str, instance_id: str) -> str | None:
        """Why an instance of this region may not be rebooted from this channel, or None when it may."""
        regions = self.channel_regions.get(channel_id)
        if regions is None or region in regions:
            return None
        return (
            f"This channel may reboot audit instances only in {', '.join(sorted(regions))}; `{instance_id}` is in "
            f"{region}. Ask in a channel for {region} (BOT_CHANNEL_TARGETS sets which channel reaches which region)."
        )

    def regions_here(self, channel_id: str) -> frozenset[str] | None:
        """The regions this channel is scoped to, or None when it may reach every one."""
        return self.channel_regions.get(channel_id)
