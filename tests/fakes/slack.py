"""A fake Slack Web API (under /api/) that also serves response_url hooks (under /hooks/).

It answers as Slack does: HTTP 200 with {"ok": false, "error": ...} for API errors, `invalid_auth` for a
wrong bot token, and it keeps the messages it was asked to post and update so tests can read the channel.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.http import Answer, FakeHttpServer, Received
from tests.fakes.socket_mode import FakeSocketMode

BOT_TOKEN = "xoxb-test-token"


@dataclass
class Fault:
    method: str
    kind: str
    when: Callable[[dict[str, Any]], bool]
    hit: float | None = None  # when it struck


APP_TOKEN = "xapp-1-A1-test-token"


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    reply_broadcast: bool = False


class FakeSlack(FakeHttpServer):
    def __init__(self, *, bot_token: str = BOT_TOKEN) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.not_in_channel: set[str] = set()
        self.messages: dict[tuple[str, str], Message] = {}
        self.scripted: dict[str, deque[Answer]] = defaultdict(deque)
        self.usergroups: dict[str, list[str]] = {}
        self.views: dict[str, Any] = {}
        self.delays: dict[str, float] = {}  # seconds a Web API method takes to answer
        # Faults after the call was carried out: "drop" closes the connection unanswered, a number is a delay
        # before the answer (past the client's timeout, the client cannot know the call happened).
        self.after: dict[str, deque[str | float]] = defaultdict(deque)
        self.faults: list[Fault] = []
        self.expired_hooks: set[str] = set()  # response_url numbers that answer 404 expired_url
        self.socket_mode: FakeSocketMode | None = None  # set it to answer apps.connections.open
        self.app_token = APP_TOKEN
        self._ts = itertools.count(1)

    # --- what tests read ------------------------------------------------------------------------------

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The arguments of every call to a Web API method, in order."""
        return [self.arguments(r) for r in self.requests_to(f"/api/{method}")]

    def hooks(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.startswith("/hooks/")]

    def hook_texts(self) -> list[str]:
        return [str(r.json.get("text", "")) for r in self.hooks()]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts]

    def fail_next(self, method: str, error: str, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.scripted[method].append(Answer(status, {"ok": False, "error": error}, headers or {}))

    def fault(self, method: str, kind: str, when: Callable[[dict[str, Any]], bool] = lambda _: True) -> Fault:
        """Fail the first call of `method` whose arguments satisfy `when`, once:

        - "reset": the connection closes before Slack acts on the call;
        - "reset_after": Slack carries the call out, then the connection closes unanswered;
        - "timeout": Slack carries it out and answers after 1.5 s (past the bot's timeout in these tests);
        - "ratelimited": HTTP 429 with Retry-After: 1; "500": HTTP 500 internal_error;
        - any other word: Slack's answer `{"ok": false, "error": kind}` (not_in_channel, message_not_found...).

        `method` "response_url" faults the posts to response_urls (/hooks/...), `when` seeing the posted JSON:
        "reset" and "reset_after" (both recorded in `received`, neither answered) and "500" apply there.
        """
        fault = Fault(method, kind, when)
        with self.lock:
            self.faults.append(fault)
        return fault

    def posted(self, channel: str, text: str) -> list[Message]:
        """Messages in `channel` (a thread or not) whose text contains `text`."""
        with self.lock:
            return [m for m in self.messages.values() if m.channel == channel and text in m.text]

    @staticmethod
    def arguments(request: Received) -> dict[str, Any]:
        if request.headers.get("content-type", "").startswith("application/json"):
            return dict(request.json or {})
        return {k: v[-1] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}

    # --- the server -----------------------------------------------------------------------------------

    def handle(self, request: Received) -> Answer | None:
        if request.path.startswith("/hooks/"):
            if request.method != "POST":
                return Answer(405, raw=b"method_not_allowed")
            with self.lock:
                refused = self.expired_hooks and any(request.path.endswith(f"/{h}") for h in self.expired_hooks)
                chosen = next(
                    (f for f in self.faults if f.method == "response_url" and f.when(request.json or {})), None
                )
                if chosen is not None:
                    self.faults.remove(chosen)
                    chosen.hit = time.time()
            if refused:  # Slack's answer to a response_url past its 30 minutes or 5 uses
                return Answer(404, raw=b"expired_url", headers={"Content-Type": "text/html"})
            if chosen is not None and chosen.kind in ("reset", "reset_after"):  # kept in `received` either way
                return None
            if chosen is not None and chosen.kind == "500":
                return Answer(500, raw=b"internal_error", headers={"Content-Type": "text/html"})
            return Answer(200, raw=b"ok", headers={"Content-Type": "text/html"})
        if not request.path.startswith("/api/"):
            return Answer(404, raw=b"not found")
        method = request.path.removeprefix("/api/")
        if self.delays.get(method):
            time.sleep(self.delays[method])
        if method == "apps.connections.open":  # the one method called with the app-level token
            with self.lock:
                scripted = self.scripted[method].popleft() if self.scripted[method] else None
            return scripted or Answer(200, self._apps_connections_open(request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {self.bot_token}":
            return Answer(
                200, {"ok": False, "error": "invalid_auth" if request.headers.get("authorization") else "not_authed"}
            )
        with self.lock:
            if self.scripted[method]:
                return self.scripted[method].popleft()
        args = self.arguments(request)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return Answer(200, {"ok": False, "error": "unknown_method"})
        with self.lock:
            chosen = next((f for f in self.faults if f.method == method and f.when(args)), None)
            if chosen is not None:
                self.faults.remove(chosen)
                chosen.hit = time.time()
        if chosen is not None:
            match chosen.kind:
                case "reset":
                    return None
                case "ratelimited":
                    return Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
                case "500":
                    return Answer(500, {"ok": False, "error": "internal_error"})
                case "reset_after" | "timeout":
                    with self.lock:
                        self.after[method].appendleft("drop" if chosen.kind == "reset_after" else 1.5)
                case error:
                    return Answer(200, {"ok": False, "error": error})
        answer = Answer(200, handler(args))
        with self.lock:
            fault = self.after[method].popleft() if self.after[method] else None
        if fault == "drop":
            return None
        if isinstance(fault, float | int):
            self.wait(float(fault))
        return answer

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": "Acme",
            "user": "dbss-reboot",
            "team_id": "T1",
            "user_id": "UBOT",
            "bot_id": "B1",
        }

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        ts = f"1700000000.{next(self._ts):06d}"
        metadata = args.get("metadata")
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        message = Message(
            channel,
            ts,
            str(args.get("text", "")),
            blocks,
            args.get("thread_ts"),
            metadata=metadata,
            reply_broadcast=str(args.get("reply_broadcast", "")).lower() in ("1", "true"),
        )
        with self.lock:
            self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": message.text, "blocks": blocks, "ts": ts}}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel", "")), str(args.get("ts", "")))
        with self.lock:
            message = self.messages.get(key)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.history.append({"text": message.text, "blocks": message.blocks})
            message.text = str(args.get("text", ""))
            blocks = args.get("blocks") or []
            message.blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message.text}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """A thread's messages, parent first; metadata only with include_all_metadata (as Slack does)."""
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        if channel in self.not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        with self.lock:
            found = [m for m in self.messages.values() if m.channel == channel and (m.ts == ts or m.thread_ts == ts)]
        if not found:
            return {"ok": False, "error": "thread_not_found"}
        return self._page([self._as_read(m, args) for m in sorted(found, key=lambda m: m.ts)], args)

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if channel in self.not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        with self.lock:  # `oldest` is not applied: this fake's ts are counters, not clock times
            found = [m for m in self.messages.values() if m.channel == channel and m.thread_ts is None]
        return self._page([self._as_read(m, args) for m in sorted(found, key=lambda m: m.ts)], args)

    @staticmethod
    def _page(messages: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
        """One page of `limit` messages (Slack's default 100, at most 999) from the opaque `cursor` on; the last
        page's next_cursor is empty."""
        try:
            limit = min(max(int(args.get("limit") or 100), 1), 999)
            start = (
                int(base64.b64decode(str(args["cursor"])).decode().removeprefix("next:")) if args.get("cursor") else 0
            )
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "invalid_cursor"}
        page = messages[start : start + limit]
        more = start + limit < len(messages)
        cursor = base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""
        return {"ok": True, "messages": page, "has_more": more, "response_metadata": {"next_cursor": cursor}}

    @staticmethod
    def _as_read(m: Message, args: dict[str, Any]) -> dict[str, Any]:
        read: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text}
        if m.thread_ts:
            read["thread_ts"] = m.thread_ts
        if m.metadata and str(args.get("include_all_metadata", "")).lower() in ("1", "true"):
            read["metadata"] = m.metadata
        return read

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if str(args.get("channel", "")) in self.not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        with self.lock:
            self.views["V1"] = view
        return {"ok": True, "view": {"id": "V1", "hash": "h1", **(view or {})}}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = str(args.get("view_id", ""))
        with self.lock:
            if view_id not in self.views:
                return {"ok": False, "error": "not_found"}
            view = args.get("view")
            self.views[view_id] = json.loads(view) if isinstance(view, str) else view
        return {"ok": True, "view": {"id": view_id, "hash": "h2"}}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup", ""))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _apps_connections_open(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            return {"ok": False, "error": "not_authed"}
        if authorization != f"Bearer {self.app_token}":
            return {"ok": False, "error": "invalid_auth"}
        if self.socket_mode is None:
            return {"ok": False, "error": "unknown_method"}
        return {"ok": True, "url": self.socket_mode.issue_url()}
