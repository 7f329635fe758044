"""Confirmation keys: one for the whole deployment, from BOT_CONFIRM_KEY (with a previous key during a rotation) or
derived from the Slack secret of the mode; the same on every replica and after every restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.core.confirmation import ConfirmationSigner, InvalidToken

PID = "0123456789abcdef0123456789abcdef"
KEY = "k" * 40
OLD = "o" * 40


def settings(tmp_path: Path | None = None, **values: str) -> Settings:
    return load_settings(_env_file=None, _secrets_dir=tmp_path, dbss_project_id=PID, dbss_auth_token="t", **values)


def no_store_key() -> bytes:
    raise AssertionError("the state store's key is not used when a secret is configured")


def signer(s: Settings) -> ConfirmationSigner:
    return ConfirmationSigner.from_secrets(s.confirmation_secrets, no_store_key)


def card(s: ConfirmationSigner) -> str:
    return s.issue(instance_id="i" * 32, requester="UALICE", channel="C1", expires_at=2_000_000_000)[1]


def test_replicas_with_the_same_settings_share_a_key_derived_from_the_slack_secret() -> None:
    """HTTP mode: from the signing secret; Socket Mode: from the app token. Two replicas (two processes, two
    stores) verify each other's cards; a deployment with another secret does not."""
    http = settings(slack_signing_secret="s" * 32)
    assert signer(settings(slack_signing_secret="s" * 32)).verify(card(signer(http))).requester == "UALICE"
    socket = settings(slack_app_token="xapp-1-A1-abc", slack_signing_secret="s" * 32)
    assert signer(socket).verify(card(signer(settings(slack_app_token="xapp-1-A1-abc"))))
    with pytest.raises(InvalidToken):
        signer(settings(slack_signing_secret="x" * 32)).verify(card(signer(http)))
    with pytest.raises(InvalidToken):
        signer(socket).verify(card(signer(http)))


def test_a_rotated_key_still_verifies_cards_signed_with_the_previous_one(tmp_path: Path) -> None:
    """BOT_CONFIRM_KEY (here from a secrets file) signs; BOT_CONFIRM_KEY_PREVIOUS only verifies: a card offered
    just before the rotation can still be confirmed, and new cards are signed with the new key."""
    before = signer(settings(bot_confirm_key=OLD))
    issued_before = card(before)
    (tmp_path / "bot_confirm_key").write_text(KEY + "\n")
    after = signer(settings(tmp_path, bot_confirm_key_previous=OLD))
    assert after.verify(issued_before).requester == "UALICE"
    issued_after = card(after)
    assert signer(settings(bot_confirm_key=KEY)).verify(issued_after)
    with pytest.raises(InvalidToken):
        before.verify(issued_after)
    with pytest.raises(InvalidToken):  # the previous key dropped after one TTL: its cards are refused
        signer(settings(bot_confirm_key=KEY)).verify(issued_before)


def test_a_short_confirmation_key_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="BOT_CONFIRM_KEY"):
        settings(bot_confirm_key="too-short")


def test_without_any_secret_the_state_stores_key_serves() -> None:
    """The demo and a console without Slack settings: the key the state store keeps."""
    s = settings()
    assert s.confirmation_secrets == ()
    store_key = b"z" * 32
    assert ConfirmationSigner.from_secrets(s.confirmation_secrets, lambda: store_key).verify(
        card(ConfirmationSigner(store_key))
    )
