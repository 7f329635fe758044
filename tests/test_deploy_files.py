"""manifest.yaml and Procfile match what the code serves."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_manifest_is_a_valid_socket_mode_app_with_the_command() -> None:
    """The manifest declares /dbss-reboot, interactivity, Socket Mode, and only the scopes the bot uses."""
    manifest = yaml.safe_load((ROOT / "manifest.yaml").read_text())
    assert manifest["_metadata"]["major_version"] == 1
    info = manifest["display_information"]
    assert len(info["name"]) <= 35 and len(info["description"]) <= 140 and len(info["long_description"]) <= 4000
    bot_user = manifest["features"]["bot_user"]
    assert len(bot_user["display_name"]) <= 80 and set(bot_user["display_name"]) <= set(
        "abcdefghijklmnopqrstuvwxyz0123456789-_."
    )
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/dbss-reboot" and command["description"] and command["usage_hint"]
    assert "url" not in command  # Socket Mode: no request URL
    shortcuts = {s["callback_id"]: s for s in manifest["features"]["shortcuts"]}
    assert shortcuts["dbss_reboot_from_message"]["type"] == "message"
    assert shortcuts["dbss_reboot_global"]["type"] == "global"
    assert all(len(s["name"]) <= 24 and len(s["description"]) <= 150 for s in shortcuts.values())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "usergroups:read",
        "channels:history",
        "groups:history",
    }
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True and "request_url" not in settings["interactivity"]
    assert settings["socket_mode_enabled"] is True and settings["token_rotation_enabled"] is False


def test_procfile_has_web_and_worker() -> None:
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert lines == {"web": "python -m bot http", "worker": "python -m bot socket"}
