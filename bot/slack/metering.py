"""The Slack side of the metrics: acknowledgement time and commands (a Bolt middleware), and Web API errors (the
client every Web API call of the bot goes through)."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable
from http.client import HTTPException
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.core.commands import (
    HistoryCommand,
    ListCommand,
    RebootCommand,
    ShowHelp,
    ShowPicker,
    StatusCommand,
    parse,
)
from bot.metrics import COMMAND_KINDS, REQUEST_KINDS, CommandKind, Metrics

INTERACTIVE = {
    "block_actions": "action",
    "shortcut": "shortcut",
    "message_action": "shortcut",
    "view_submission": "view",
    "view_closed": "view",
}


class AckMetrics(Middleware):
    """Times each request from the bot's first middleware to the listener's return (when the ack is sent), and
    counts slash commands by what they ask for. The bot's outermost middleware."""

    def __init__(self, metrics: Metrics) -> None:
        self._commands = {kind: metrics.commands.labels(kind) for kind in COMMAND_KINDS}
        self._acks = {kind: metrics.ack_duration.labels(kind) for kind in REQUEST_KINDS}

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        started = time.perf_counter()
        try:
            return next()
        finally:
            elapsed = time.perf_counter() - started
            body = req.body
            if "command" in body:
                self._acks["command"].observe(elapsed)
                self._commands[command_kind(str(body.get("text") or ""))].inc()
            else:
                self._acks[INTERACTIVE.get(str(body.get("type")), "other")].observe(elapsed)


def command_kind(text: str) -> CommandKind:
    """What a slash command asks for, as the listener parses it."""
    match parse(text):
        case RebootCommand():
            return "reboot"
        case ShowPicker():
            return "picker"
        case ShowHelp():
            return "help"
        case StatusCommand():
            return "status"
        case ListCommand():
            return "list"
        case HistoryCommand():
            return "history"
    return "invalid"


class MeteredWebClient(WebClient):
    """slack_sdk's WebClient, counting the calls that fail by method and Slack's error code (after its retry
    handlers, if any, have given up)."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        try:
            return super().api_call(api_method, **kwargs)
        except SlackApiError as err:
            self._metrics.slack_error(api_method, str(err.response.get("error") or f"http_{err.response.status_code}"))
            raise
        except TimeoutError:
            self._metrics.slack_error(api_method, "timeout")
            raise
        except (urllib.error.URLError, OSError, HTTPException):
            self._metrics.slack_error(api_method, "connection_error")
            raise
