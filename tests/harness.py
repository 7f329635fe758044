"""The bot served over real HTTP on 127.0.0.1, driven with correctly signed Slack requests."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx

from bot.config import Settings
from bot.slack.app import wsgi_app
from bot.wiring import Bot, build
from tests.conftest import PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALICE, BOB, MALLORY = "UALICE", "UBOB", "UMALLORY"
INCIDENTS, RANDOM = "CINCIDENT", "CRANDOM"
T = TypeVar("T")


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for a raw body."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def eventually(check: Callable[[], T | None], *, timeout: float = 5.0, what: str = "condition") -> T:
    """Poll until `check` returns something truthy (background work finishes after the ack)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class Harness:
    """One bot, its fakes, and helpers to send it slash commands and button clicks."""

    def __init__(self, tmp_path: Path, dbss: FakeDbss, slack: FakeSlack, **overrides: Any) -> None:
        self.dbss = dbss
        self.slack = slack
        values: dict[str, Any] = {
            "dbss_project_id": PROJECT_ID,
            "dbss_endpoint": dbss.url,
            "dbss_auth_token": "good-token",
            "dbss_timeout_seconds": 2,
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": f"{slack.url}/api/",
            "bot_allowed_users": f"{ALICE},{BOB}",
            "bot_state_path": str(tmp_path / "state.sqlite3"),
        }
        values.update(overrides)
        self.settings = Settings(_env_file=None, **values)
        self._hook = 0
        self.bot: Bot
        self._server: WSGIServer
        self.start()

    def start(self) -> None:
        self.bot = build(self.settings)
        self._server = make_server(
            "127.0.0.1",
            0,
            wsgi_app(self.bot.app, signing_secret=SIGNING_SECRET, ops=self.bot.ops()),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self._server.server_port}", timeout=10)

    def stop(self) -> None:
        self.http.close()
        self._server.shutdown()
        self._server.server_close()
        self.bot.close()

    def restart(self) -> None:
        """A new process in all but name: everything rebuilt from the same settings and state file."""
        self.stop()
        self.start()

    def hook_url(self) -> str:
        self._hook += 1
        return f"{self.slack.url}/hooks/{self._hook}"

    def post(
        self, body: str, *, headers: dict[str, str] | None = None, content_type: str | None = None
    ) -> httpx.Response:
        all_headers = {"Content-Type": content_type or "application/x-www-form-urlencoded", **sign(body)}
        all_headers.update(headers or {})
        return self.http.post("/slack/events", content=body.encode(), headers=all_headers)

    def command(self, text: str, *, user: str = ALICE, channel: str = INCIDENTS) -> httpx.Response:
        body = urlencode(
            {
                "token": "deprecated-verification-token",
                "team_id": "T1",
                "team_domain": "acme",
                "channel_id": channel,
                "channel_name": "incident",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/dbss-reboot",
                "text": text,
                "api_app_id": "A1",
                "response_url": self.hook_url(),
                "trigger_id": "1.2.3",
            }
        )
        return self.post(body)

    def click_payload(
        self, action_id: str, value: Any, *, user: str, card: Any, channel: str | None = None
    ) -> dict[str, Any]:
        channel = channel or card.channel
        return {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T1"},
            "api_app_id": "A1",
            "team": {"id": "T1", "domain": "acme"},
            "container": {"type": "message", "message_ts": card.ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": "4.5.6",
            "channel": {"id": channel, "name": "incident"},
            "message": {
                "type": "message",
                "ts": card.ts,
                "text": card.text,
                "blocks": card.blocks,
                "user": "UBOT",
                **({"thread_ts": card.thread_ts} if card.thread_ts else {}),
            },
            "response_url": self.hook_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "dbss_reboot_actions",
                    "value": value,
                    "type": "button",
                    "action_ts": str(time.time()),
                }
            ],
        }

    def click(
        self, action_id: str, *, user: str = ALICE, card: Any, value: Any = None, channel: str | None = None
    ) -> httpx.Response:
        if value is None:
            value = button_value(card, action_id)
        payload = self.click_payload(action_id, value, user=user, card=card, channel=channel)
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def wait_for_card(self, *, count: int = 1) -> Any:
        """The newest card the bot posted (a top-level message with buttons)."""

        def cards() -> list[Any]:
            with self.slack.lock:
                return [m for m in self.slack.messages.values() if m.thread_ts is None and _has_buttons(m.blocks)]

        found = eventually(lambda: cards() if len(cards()) >= count else None, what="the card")
        return copy.deepcopy(found[-1])  # as a second tab would still show it, buttons and all

    def wait_for_cards(self) -> list[Any]:
        """Every card posted so far that still has its buttons."""
        with self.slack.lock:
            return [
                copy.deepcopy(m) for m in self.slack.messages.values() if m.thread_ts is None and _has_buttons(m.blocks)
            ]

    def wait_for_hook(self, *, count: int = 1) -> str:
        texts = eventually(
            lambda: self.slack.hook_texts() if len(self.slack.hook_texts()) >= count else None, what="a private reply"
        )
        return texts[count - 1]

    def wait_for_thread(self, card: Any, *, count: int = 1) -> list[Any]:
        return eventually(
            lambda: (
                self.slack.thread(card.channel, card.ts)
                if len(self.slack.thread(card.channel, card.ts)) >= count
                else None
            ),
            what="a thread reply",
        )

    def drain(self) -> None:
        """Wait until every job queued so far has finished, on the urgent pool (clicks, modals), the reboots pool
        (confirmed reboots' DBSS calls) and then on the work pool: one barrier job per worker can only pass once
        all workers are free. The work pool's barrier jobs go through the acks-first gate, behind any job it
        holds."""
        for pool, submit in (
            (self.bot.urgent, self.bot.urgent.submit),
            (self.bot.reboots, self.bot.reboots.submit),
            (self.bot.work, self.bot.acks_first.submit),
        ):
            workers = pool._max_workers
            barrier = threading.Barrier(workers)
            passed = [threading.Event() for _ in range(workers)]

            def wait(done: threading.Event, barrier: threading.Barrier = barrier) -> None:
                barrier.wait(10)
                done.set()

            for done in passed:
                submit(functools.partial(wait, done))
            for done in passed:
                assert done.wait(15), "a pool did not drain"


def _has_buttons(blocks: list[dict[str, Any]]) -> bool:
    return any(b.get("type") == "actions" for b in blocks)


def button_value(card: Any, action_id: str) -> str:
    for block in card.blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button on the card")
