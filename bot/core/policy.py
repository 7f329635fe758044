"""Who may reboot, and where: deny by default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """An allow-list of Slack user IDs (empty: nobody) and of channel IDs (empty: any channel)."""

    allowed_users: frozenset[str]
    allowed_channels: frozenset[str]

    def refusal(self, user_id: str, channel_id: str) -> str | None:
        """Why this user may not reboot in this channel, or None when they may."""
        if user_id not in self.allowed_users:
            return (
                "You are not on this bot's reboot allow-list. Ask the platform team to add your Slack user ID "
                f"(`{user_id}`) to BOT_ALLOWED_USERS, or ask someone who is on it."
            )
        if self.allowed_channels and channel_id not in self.allowed_channels:
            return (
                "Reboots are not enabled in this channel. Use one of the incident channels listed in "
                "BOT_ALLOWED_CHANNELS, or ask the platform team to add this one."
            )
        return None
