"""`python -m bot` as a real process: configuration errors, and HTTP mode under gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.harness import ALICE, INCIDENTS, SIGNING_SECRET, eventually, sign

ROOT = Path(__file__).resolve().parent.parent


def run_bot(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        env={**base, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_missing_configuration_is_one_clear_message(tmp_path: Path) -> None:
    """No settings at all: exit code 2 and a message naming the variables, with no traceback."""
    proc = run_bot([], {}, tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "DBSS_PROJECT_ID is required" in err and "exactly one kind of DBSS credential" in err
    assert "Traceback" not in err


def test_http_mode_needs_a_signing_secret(tmp_path: Path) -> None:
    proc = run_bot(["http"], {"DBSS_PROJECT_ID": PROJECT_ID, "DBSS_AUTH_TOKEN": "t", "SLACK_BOT_TOKEN": "x"}, tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "SLACK_SIGNING_SECRET" in err and "Traceback" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_mode_serves_healthz_and_signed_commands(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The real entry point under gunicorn: /healthz is 200, a signed command is acked and the card is posted."""
    port = free_port()
    env = {
        "DBSS_PROJECT_ID": PROJECT_ID,
        "DBSS_ENDPOINT": fake_dbss.url,
        "DBSS_AUTH_TOKEN": "good-token",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "PORT": str(port),
        "BOT_ALLOWED_USERS": ALICE,
        "BOT_STATE_PATH": str(tmp_path / "state.sqlite3"),
    }
    proc = run_bot([], env, tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            def healthy() -> bool:
                try:
                    return http.get("/healthz").status_code == 200
                except httpx.TransportError:
                    assert proc.poll() is None, proc.communicate()[1]
                    return False

            eventually(healthy, timeout=30, what="the bot to listen")
            body = urlencode(
                {
                    "command": "/dbss-reboot",
                    "text": INSTANCE_ID,
                    "user_id": ALICE,
                    "channel_id": INCIDENTS,
                    "team_id": "T1",
                    "response_url": f"{fake_slack.url}/hooks/1",
                }
            )
            started = time.monotonic()
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            response = http.post("/slack/events", content=body, headers={**form, **sign(body)})
            assert response.status_code == 200 and time.monotonic() - started < 3
            eventually(lambda: fake_slack.calls("chat.postMessage"), timeout=10, what="the card")
            assert fake_slack.calls("chat.postMessage")[0]["channel"] == INCIDENTS
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "gunicorn" in err.lower() or "Booting worker" in err
    assert "good-token" not in err and SIGNING_SECRET not in err and BOT_TOKEN not in err


def test_sigterm_finishes_the_reboot_in_hand_and_keeps_the_follow_up(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """SIGTERM during a DBSS call: the call completes, its outcome reaches the thread, the follow-up stays
    in the state store for the next start, and the process exits 0."""
    import json

    from bot.core.store import StateStore
    from tests.harness import button_value

    port = free_port()
    state = tmp_path / "state.sqlite3"
    env = {
        "DBSS_PROJECT_ID": PROJECT_ID,
        "DBSS_ENDPOINT": fake_dbss.url,
        "DBSS_AUTH_TOKEN": "good-token",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "PORT": str(port),
        "BOT_ALLOWED_USERS": ALICE,
        "BOT_STATE_PATH": str(state),
        "BOT_POLL_INTERVAL_SECONDS": "60",
    }
    fake_dbss.delays["reboot"] = 1.5
    proc = run_bot(["http"], env, tmp_path)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            def healthy() -> bool:
                try:
                    return http.get("/healthz").status_code == 200
                except httpx.TransportError:
                    assert proc.poll() is None, proc.communicate()[1]
                    return False

            eventually(healthy, timeout=30, what="the bot to listen")
            body = urlencode(
                {
                    "command": "/dbss-reboot",
                    "text": INSTANCE_ID,
                    "user_id": ALICE,
                    "channel_id": INCIDENTS,
                    "team_id": "T1",
                    "response_url": f"{fake_slack.url}/hooks/1",
                }
            )
            http.post("/slack/events", content=body, headers={**form, **sign(body)})
            eventually(lambda: fake_slack.messages, timeout=10, what="the card")
            card = next(iter(fake_slack.messages.values()))
            payload = {
                "type": "block_actions",
                "user": {"id": ALICE},
                "team": {"id": "T1"},
                "channel": {"id": INCIDENTS},
                "container": {"type": "message", "message_ts": card.ts, "channel_id": INCIDENTS},
                "message": {"ts": card.ts, "blocks": card.blocks},
                "response_url": f"{fake_slack.url}/hooks/2",
                "actions": [{"action_id": "dbss_reboot_confirm", "value": button_value(card, "dbss_reboot_confirm")}],
            }
            click = urlencode({"payload": json.dumps(payload)})
            assert http.post("/slack/events", content=click, headers={**form, **sign(click)}).status_code == 200
            eventually(lambda: fake_dbss.reboot_requests(), timeout=10, what="the reboot to be in flight")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert fake_dbss.reboots_done == [INSTANCE_ID]
    assert any("DBSS accepted" in m.text for m in fake_slack.thread(INCIDENTS, card.ts))
    store = StateStore(state)
    assert [f.instance_id for f in store.active_followups()] == [INSTANCE_ID]
    assert store.audit(instance_id=INSTANCE_ID)[-1].outcome == "accepted"
    store.close()
