"""The bot as a real process (`python -m bot ...`) against the fakes, and the signed bodies Slack would send."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.harness import ALICE, INCIDENTS, SIGNING_SECRET, button_value, eventually, sign

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(dbss: FakeDbss, slack: FakeSlack, state: Path, **extra: str) -> dict[str, str]:
    """The environment of a bot process talking to the fakes."""
    return {
        "DBSS_PROJECT_ID": PROJECT_ID,
        "DBSS_ENDPOINT": dbss.url,
        "DBSS_AUTH_TOKEN": "good-token",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack.url}/api/",
        "BOT_ALLOWED_USERS": ALICE,
        "BOT_STATE_PATH": str(state),
        "BOT_HEALTH_PORT": str(free_port()),  # Socket Mode's /healthz, /readyz, /metrics: never a fixed port in tests
        **extra,
    }


def command_body(slack: FakeSlack, text: str = INSTANCE_ID, *, user: str = ALICE, hook: str = "1") -> str:
    return urlencode(
        {
            "command": "/dbss-reboot",
            "text": text,
            "user_id": user,
            "channel_id": INCIDENTS,
            "team_id": "T1",
            "response_url": f"{slack.url}/hooks/{hook}",
        }
    )


def confirm_body(slack: FakeSlack, card: Any, *, user: str = ALICE, hook: str = "2") -> str:
    """The block_actions body of a click on the card's Reboot button."""
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "channel": {"id": INCIDENTS},
        "container": {"type": "message", "message_ts": card.ts, "channel_id": INCIDENTS},
        "message": {"ts": card.ts, "blocks": card.blocks},
        "response_url": f"{slack.url}/hooks/{hook}",
        "actions": [{"action_id": "dbss_reboot_confirm", "value": button_value(card, "dbss_reboot_confirm")}],
    }
    return urlencode({"payload": json.dumps(payload)})


class BotProcess:
    """`python -m bot <mode>` in its own session (so SIGKILL reaches gunicorn's master and worker alike)."""

    def __init__(self, env: dict[str, str], cwd: Path, *, mode: str | None = "http", capture: bool = False) -> None:
        self.port = free_port()
        base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "PORT": str(self.port)}
        output = subprocess.PIPE if capture else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", *([mode] if mode else [])],
            env={**base, **env},
            cwd=cwd,
            stdout=output,
            stderr=output,
            text=True,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.stdout = ""
        eventually(self.healthy, timeout=30, what="the bot process to listen")

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bot exited with {self.proc.returncode}") from None
            return False

    def post(self, body: str) -> httpx.Response:
        return self.http.post(
            "/slack/events", content=body, headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        )

    def worker_pid(self) -> int:
        return int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])

    def kill(self) -> None:
        self.http.close()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> tuple[int, str]:
        """SIGTERM to the bot (gunicorn's master); its exit code and what it wrote to stderr."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        self.stdout = out or ""  # with capture=True, what it wrote to stdout (gunicorn's access log with `-`)
        return self.proc.returncode, err or ""
