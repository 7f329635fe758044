"""Malformed and unsigned requests, property-based, through the real HTTP path (bot/slack/guard.py in front of
Bolt) and through Socket Mode: never a 5xx, never a traceback, never a DBSS call, one log line each, and the bot
still answers a genuine command afterwards."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack import guard, messages
from bot.slack.socket_mode import SocketMode
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import APP_TOKEN, FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.harness import ALICE, INCIDENTS, SIGNING_SECRET, Harness, eventually

EXAMPLES = settings(max_examples=150, deadline=None, derandomize=True, database=None)
QUICK = 1.0  # seconds: a refusal is answered at once (generous, for a loaded CI machine)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
NOT_STRING = JSON.filter(lambda v: v is not None and not isinstance(v, str))
NOT_OBJECT = JSON.filter(lambda v: v is not None and not isinstance(v, dict))
NOT_LIST = JSON.filter(lambda v: v is not None and not isinstance(v, list))
NOT_ID_HOLDER = JSON.filter(
    lambda v: (
        v is not None and not isinstance(v, str) and not (isinstance(v, dict) and isinstance(v.get("id"), str | None))
    )
)
NOT_USER = st.one_of(
    st.none(), NOT_OBJECT, st.just({}), st.just({"id": ""}), NOT_STRING.map(lambda v: {"id": v}), st.just("UALICE")
)
NOT_ACTIONS = st.one_of(
    st.none(),
    st.just([]),
    NOT_LIST,
    st.lists(NOT_OBJECT, min_size=1, max_size=3),
    st.just([{}]),
    st.just([{"action_id": ""}]),
    NOT_STRING.map(lambda v: [{"action_id": v}]),
    NOT_STRING.map(lambda v: [{"action_id": "dbss_reboot_confirm", "value": v}]),
    NOT_STRING.map(lambda v: [{"action_id": "dbss_reboot_pick", "block_id": v}]),
    NOT_OBJECT.map(lambda v: [{"action_id": "dbss_reboot_pick", "selected_option": v}]),
    NOT_STRING.map(lambda v: [{"action_id": "dbss_reboot_pick", "selected_option": {"value": v}}]),
)
FOREIGN = st.sampled_from(guard._FOREIGN).flatmap(lambda k: JSON.map(lambda v: (k, v)))


class Recorder(logging.Handler):
    """Every record logged while a property runs, by anyone."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.exc_info]

    def refusals(self) -> list[logging.LogRecord]:
        return self.refusals_of(guard.__name__)

    def refusals_of(self, logger: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == logger and r.levelno >= logging.WARNING]


@pytest.fixture
def bot(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> Iterator[tuple[Harness, Recorder]]:
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_channels=INCIDENTS)
    recorder = Recorder()
    root = logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.INFO)
    try:
        yield h, recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(level)
        h.stop()


# --- what Slack sends, one genuine payload per surface --------------------------------------------------------


def command_form(h: Harness, **fields: str) -> dict[str, str]:
    return {
        "token": "deprecated",
        "team_id": "T1",
        "channel_id": INCIDENTS,
        "user_id": ALICE,
        "command": "/dbss-reboot",
        "text": "help",
        "response_url": h.hook_url(),
        "trigger_id": "1.2.3",
        **fields,
    }


def surfaces(h: Harness) -> dict[str, dict[str, Any]]:
    """A well-formed payload of each interactive surface; each is mutated below into a malformed one."""
    user, team = {"id": ALICE, "team_id": "T1"}, {"id": "T1", "domain": "acme"}
    state = {
        "values": {
            messages.MODAL_INSTANCE: {
                messages.MODAL_INSTANCE: {"type": "static_select", "selected_option": {"value": INSTANCE_ID}}
            },
            messages.MODAL_CHANNEL: {
                messages.MODAL_CHANNEL: {"type": "conversations_select", "selected_conversation": INCIDENTS}
            },
            messages.MODAL_REASON: {messages.MODAL_REASON: {"type": "plain_text_input", "value": "stuck"}},
        }
    }
    view = {"id": "V1", "hash": "h1", "type": "modal", "callback_id": messages.MODAL_CALLBACK, "state": state}
    message = {"type": "message", "ts": "1700000000.000100", "text": f"alert {INSTANCE_ID}", "blocks": []}
    return {
        "block_actions": {
            "type": "block_actions",
            "user": user,
            "team": team,
            "channel": {"id": INCIDENTS},
            "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": INCIDENTS},
            "message": message,
            "response_url": h.hook_url(),
            "trigger_id": "4.5.6",
            "actions": [{"action_id": messages.CONFIRM_ACTION, "block_id": "b", "type": "button", "value": "x.y"}],
        },
        "message_action": {
            "type": "message_action",
            "callback_id": "dbss_reboot_from_message",
            "user": user,
            "team": team,
            "channel": {"id": INCIDENTS},
            "message": message,
            "response_url": h.hook_url(),
            "trigger_id": "4.5.6",
        },
        "shortcut": {
            "type": "shortcut",
            "callback_id": "dbss_reboot_global",
            "user": user,
            "team": team,
            "trigger_id": "4.5.6",
        },
        "view_submission": {"type": "view_submission", "user": user, "team": team, "view": view},
        "block_suggestion": {
            "type": "block_suggestion",
            "user": user,
            "team": team,
            "action_id": messages.PICK_ACTION,
            "block_id": messages.MODAL_INSTANCE,
            "value": "audit",
            "view": view,
        },
    }


# Where each surface breaks: (path into the payload, values that are wrong there). Every pair is malformed.
ID_FIELDS: list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]] = [
    (("user",), NOT_USER),
    (("team",), NOT_ID_HOLDER),
    (("channel",), NOT_ID_HOLDER),
    (("enterprise",), NOT_ID_HOLDER),
    (("response_url",), NOT_STRING),
    (
        ("type",),
        st.one_of(NOT_STRING, st.sampled_from(["interactive_message", "dialog_submission", "event_callback", ""])),
    ),
]
BREAKS: dict[str, list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]]] = {
    "block_actions": [
        *ID_FIELDS,
        (("actions",), NOT_ACTIONS),
        (("container",), NOT_OBJECT),
        (("message",), NOT_OBJECT),
        (("message", "blocks"), NOT_LIST),
        (("message", "thread_ts"), NOT_STRING),
        (("container", "message_ts"), NOT_STRING),
        (("response_urls",), st.one_of(NOT_LIST, st.lists(NOT_OBJECT, min_size=1, max_size=2))),
    ],
    "message_action": [
        *ID_FIELDS,
        (("callback_id",), st.one_of(NOT_STRING, st.just(""))),
        (("message",), st.one_of(st.none(), NOT_OBJECT)),
        (("message", "ts"), NOT_STRING),
        (("message", "attachments"), NOT_LIST),
    ],
    "shortcut": [*ID_FIELDS, (("callback_id",), st.one_of(NOT_STRING, st.just(""))), (("trigger_id",), NOT_STRING)],
    "view_submission": [
        *ID_FIELDS,
        (("view",), st.one_of(st.none(), NOT_OBJECT)),
        (("view", "callback_id"), st.one_of(NOT_STRING, st.just(""))),
        (("view", "state"), st.one_of(st.none(), NOT_OBJECT)),
        (("view", "state", "values"), st.one_of(st.none(), NOT_OBJECT)),
        (("view", "state", "values", messages.MODAL_INSTANCE), NOT_OBJECT),
        (("view", "state", "values", messages.MODAL_INSTANCE, messages.MODAL_INSTANCE), NOT_OBJECT),
        (
            ("view", "state", "values", messages.MODAL_INSTANCE, messages.MODAL_INSTANCE, "selected_option"),
            st.one_of(NOT_OBJECT, NOT_STRING.map(lambda v: {"value": v})),
        ),
        (
            ("view", "state", "values", messages.MODAL_CHANNEL, messages.MODAL_CHANNEL, "selected_conversation"),
            NOT_STRING,
        ),
        (("view", "state", "values", messages.MODAL_REASON, messages.MODAL_REASON, "value"), NOT_STRING),
    ],
    "block_suggestion": [
        *ID_FIELDS,
        (("action_id",), st.one_of(st.none(), NOT_STRING, st.just(""))),
        (("value",), st.one_of(st.none(), NOT_STRING)),
        (("view",), NOT_OBJECT),
        (("view", "state", "values"), NOT_OBJECT),
    ],
}


def broken(surface: str) -> st.SearchStrategy[tuple[tuple[Any, ...], Any]]:
    choices = [st.tuples(st.just(path), wrong) for path, wrong in BREAKS[surface]]
    return st.one_of(*choices, FOREIGN.map(lambda kv: ((kv[0],), kv[1])))


def set_path(payload: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    holder = payload
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return payload


# --- assertions ---------------------------------------------------------------------------------------------------


def post_raw(h: Harness, body: bytes, *, headers: dict[str, Any] | None = None, signed: bool = True) -> httpx.Response:
    all_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        all_headers.update(sign_bytes(body))
    all_headers.update(headers or {})
    return h.http.post("/slack/events", content=body, headers=all_headers)


def sign_bytes(body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature over raw bytes (which need not be UTF-8)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def raw_request(h: Harness, head: bytes, body: bytes = b"") -> httpx.Response:
    """A request written by hand on a socket, for what httpx will not send (a bad or unsent Content-Length)."""
    port = h.http.base_url.port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n" + body)
        conn.shutdown(socket.SHUT_WR)  # a body shorter than announced ends here
        raw = b""
        while chunk := conn.recv(4096):
            raw += chunk
    return httpx.Response(int(raw.split(b" ", 2)[1]), content=raw.split(b"\r\n\r\n", 1)[1])


def refused(
    h: Harness, recorder: Recorder, send: Callable[[], httpx.Response], *, status: int = 200, drained: bool = False
) -> None:
    """The request is answered at once with `status` (200: an empty body), one log line, no traceback, and no
    DBSS call at all (also none later, when `drained`)."""
    reboots, lists = len(h.dbss.reboot_requests()), len(h.dbss.list_requests())
    before = len(recorder.refusals())
    start = time.monotonic()
    response = send()
    elapsed = time.monotonic() - start
    assert response.status_code == status, (response.status_code, response.text)
    if status == 200:
        assert response.content == b""
    assert elapsed < QUICK
    assert len(recorder.refusals()) == before + 1
    if drained:
        h.drain()
    assert recorder.tracebacks() == []
    assert len(h.dbss.reboot_requests()) == reboots and len(h.dbss.list_requests()) == lists


def still_answers(h: Harness, recorder: Recorder) -> None:
    """After everything, a genuine command still gets its card, and nothing was logged with a traceback."""
    assert h.command(INSTANCE_ID).status_code == 200
    h.wait_for_card()
    assert recorder.tracebacks() == []
    assert h.dbss.reboot_requests() == []


def interactive(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


# --- HTTP: every surface ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", sorted(BREAKS))
def test_a_signed_malformed_payload_of_each_surface_is_answered_200_with_nothing_done(
    bot: tuple[Harness, Recorder], surface: str
) -> None:
    """Each surface's genuine payload, broken in one field Bolt or a listener reads (null, wrong type, empty
    actions, a selected_option that is not an option, Events API fields...): 200, empty, one line, no DBSS call."""
    h, recorder = bot
    base = surfaces(h)[surface]

    @EXAMPLES
    @given(change=broken(surface))
    def prop(change: tuple[tuple[Any, ...], Any]) -> None:
        payload = set_path(base, *change)
        refused(h, recorder, lambda: post_raw(h, interactive(payload)))

    prop()
    h.drain()
    assert h.dbss.list_requests() == []  # nothing at all reached a listener
    still_answers(h, recorder)


def test_a_signed_malformed_slash_command_is_answered_200_with_nothing_done(bot: tuple[Harness, Recorder]) -> None:
    """Command forms missing command, user_id or channel_id, or given a field twice: 200, empty, one line."""
    h, recorder = bot

    @EXAMPLES
    @given(
        drop=st.sets(st.sampled_from(["command", "user_id", "channel_id"]), min_size=1),
        text=st.text(max_size=50).filter(lambda t: "payload" not in t),
        twice=st.sampled_from(["", "text", "user_id", "command"]),
    )
    def prop(drop: set[str], text: str, twice: str) -> None:
        form = command_form(h, text=text)
        for key in drop:
            form.pop(key)
        body = urlencode(form)
        refused(h, recorder, lambda: post_raw(h, body.encode()))
        if twice:
            doubled = urlencode([*command_form(h, text=text).items(), (twice, "again")])
            refused(h, recorder, lambda: post_raw(h, doubled.encode()))

    prop()
    still_answers(h, recorder)


def test_raw_bodies_that_do_not_parse_are_answered_200_when_signed_and_401_when_not(
    bot: tuple[Harness, Recorder],
) -> None:
    """A BOM, invalid UTF-8, a payload that is not JSON or not an object, duplicate keys, NaN, nesting past the
    limit, a JSON body, an empty body, a bad %-escape: 200 with nothing done when signed; unsigned, a wrong
    secret, or a stale or future timestamp: 401 before any parsing."""
    h, recorder = bot
    good = interactive(surfaces(h)["block_actions"])
    bodies = [
        b"\xef\xbb\xbf" + good,
        good[:-3] + b"\xff\xfe",
        b"payload=" + quote("{not json").encode(),
        b"payload=" + quote("[1, 2]").encode(),
        b"payload=" + quote('"just a string"').encode(),
        b"payload=" + quote('{"type": "block_actions", "type": "shortcut"}').encode(),
        b"payload=" + quote('{"type": "block_actions", "x": NaN}').encode(),
        b"payload=" + quote("[" * 100_000 + "]" * 100_000).encode(),
        b"payload=" + quote('{"a":' * 70 + "1" + "}" * 70).encode(),
        b"payload=%7B%FF%7D",
        b"payload=1&payload=2",
        b"text=payload",
        b'{"type": "block_actions"}',
        b"",
        b"command=%2Fdbss-reboot&user_id=UALICE&channel_id",
        b"&".join(b"f%d=1" % i for i in range(200)),
    ]
    for body in bodies:
        refused(h, recorder, lambda body=body: post_raw(h, body))
    refused(h, recorder, lambda: post_raw(h, b'{"type":"x"}', headers={"Content-Type": "application/json"}))
    unsigned: list[dict[str, Any]] = [
        {},
        sign_bytes(good, secret="not-the-secret"),
        sign_bytes(good, timestamp=int(time.time()) - 400),
        sign_bytes(good, timestamp=int(time.time()) + 400),
        {**sign_bytes(good), "X-Slack-Request-Timestamp": "12ab"},
        {**sign_bytes(good), "X-Slack-Signature": "v1=abc"},
        {**sign_bytes(good), "X-Slack-Signature": ("v0=" + "é" * 64).encode("latin-1")},
    ]
    for headers in unsigned:
        for body in (good, bodies[0], bodies[1], bodies[7]):
            refused(h, recorder, lambda b=body, hd=headers: post_raw(h, b, headers=hd, signed=False), status=401)
    h.drain()
    assert h.dbss.list_requests() == []
    still_answers(h, recorder)


def test_any_bytes_signed_or_not_never_reach_bolt(bot: tuple[Harness, Recorder]) -> None:
    """Random bytes: 200 with nothing done when signed, 401 when not; never a 5xx."""
    h, recorder = bot

    @EXAMPLES
    @given(body=st.binary(max_size=500) | st.text(max_size=300).map(str.encode), signed=st.booleans())
    def prop(body: bytes, signed: bool) -> None:
        refused(h, recorder, lambda: post_raw(h, body, signed=signed), status=200 if signed else 401)

    prop()
    still_answers(h, recorder)


def test_a_command_saying_payload_is_answered_privately_not_lost(bot: tuple[Harness, Recorder]) -> None:
    """Bolt reads a form that contains the word "payload" but no payload field as empty (it would 404, and Slack
    would show dispatch_failed): the guard answers the person privately instead, with nothing done."""
    h, recorder = bot
    before = len(recorder.refusals())
    response = h.command(f"{INSTANCE_ID} reason: payload stuck")
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral" and "`payload`" in answer["text"]
    assert len(recorder.refusals()) == before + 1
    h.drain()
    assert h.dbss.list_requests() == [] and h.slack.messages == {}


def test_a_command_whose_text_is_not_utf8_is_answered_privately(bot: tuple[Harness, Recorder]) -> None:
    """A signed slash command whose text is not valid UTF-8 (a %-escape of a stray byte, or a raw one): the person
    is told privately that the text could not be read, and nothing is done."""
    h, recorder = bot
    form = command_form(h)
    head = urlencode({k: v for k, v in form.items() if k != "text"}).encode()
    for text in (b"text=%FF%FEabc", b"text=\xff\xfeabc"):
        before = len(recorder.refusals())
        response = post_raw(h, head + b"&" + text)
        assert response.status_code == 200
        answer = response.json()
        assert answer["response_type"] == "ephemeral" and "could not read" in answer["text"]
        assert "/dbss-reboot" in answer["text"]
        assert len(recorder.refusals()) == before + 1 and recorder.tracebacks() == []
    h.drain()
    assert h.dbss.list_requests() == [] and h.slack.messages == {}


def test_an_oversized_or_unreadable_body_is_refused_unread(bot: tuple[Harness, Recorder]) -> None:
    """A Content-Length over guard.MAX_BODY: 413 before the body is read (it is never sent here); one that is not
    a number: 400; a body shorter than its Content-Length: 400. Each with one line."""
    h, recorder = bot
    size = str(guard.MAX_BODY + 1).encode()
    refused(h, recorder, lambda: raw_request(h, b"Content-Length: " + size + b"\r\n"), status=413)
    refused(h, recorder, lambda: raw_request(h, b"Content-Length: 1e3\r\n", b"payload=x"), status=400)
    short = b"Content-Length: 100\r\n"
    refused(h, recorder, lambda: raw_request(h, short, b"payload=x"), status=400)
    still_answers(h, recorder)


def test_well_formed_but_odd_payloads_reach_the_listeners_and_are_answered(bot: tuple[Harness, Recorder]) -> None:
    """What passes the guard is still handled without a 5xx or traceback: a null selected_option in the modal
    gets the modal's own error, an unknown action_id 404s (Bolt: unhandled), a huge token is refused."""
    h, recorder = bot
    base = surfaces(h)
    path = ("view", "state", "values", messages.MODAL_INSTANCE, messages.MODAL_INSTANCE, "selected_option")
    response = post_raw(h, interactive(set_path(base["view_submission"], path, None)))
    assert response.status_code == 200
    assert response.json() == {
        "response_action": "errors",
        "errors": {messages.MODAL_INSTANCE: "Choose an instance from the list."},
    }
    for odd in (
        set_path(base["block_actions"], ("actions", 0, "value"), "x" * 200_000),
        set_path(base["block_actions"], ("actions", 0, "action_id"), "not_ours"),
        set_path(base["block_actions"], ("actions",), [{"action_id": messages.PICK_ACTION, "selected_option": None}]),
        set_path(base["view_submission"], ("view", "state", "values"), {}),
        set_path(base["message_action"], ("message",), {"text": "x" * 100_000}),
    ):
        assert post_raw(h, interactive(odd)).status_code < 500
    h.drain()
    assert recorder.tracebacks() == [] and h.dbss.reboot_requests() == []
    still_answers(h, recorder)


# --- Socket Mode --------------------------------------------------------------------------------------------------


@pytest.fixture
def socket_bot(
    bot: tuple[Harness, Recorder], fake_slack: FakeSlack
) -> Iterator[tuple[Harness, Recorder, FakeSocketMode]]:
    h, recorder = bot
    with FakeSocketMode() as fake:
        fake_slack.socket_mode = fake
        mode = SocketMode(h.bot.app, app_token=APP_TOKEN)
        mode.connect()
        try:
            eventually(mode.connected, what="hello")
            yield h, recorder, fake
        finally:
            mode.close()


@pytest.fixture
def broken_payloads(bot: tuple[Harness, Recorder]) -> list[dict[str, Any]]:
    """The fuzz's malformed payloads, drawn before any WebSocket is open: websockets' pings use the global
    `random`, which Hypothesis reports as a strategy using it when a ping falls inside a draw."""
    h, _ = bot
    payloads = surfaces(h)
    drawn: list[dict[str, Any]] = []
    every_surface = st.sampled_from(sorted(BREAKS)).flatmap(lambda s: st.tuples(st.just(s), broken(s)))

    @EXAMPLES
    @given(case=every_surface)
    def collect(case: tuple[str, tuple[tuple[Any, ...], Any]]) -> None:
        surface, change = case
        drawn.append(set_path(payloads[surface], *change))

    collect()
    return drawn


def test_malformed_socket_mode_envelopes_are_acked_with_nothing_done(
    broken_payloads: list[dict[str, Any]], socket_bot: tuple[Harness, Recorder, FakeSocketMode]
) -> None:
    """The same malformed payloads as envelopes: each acknowledged at once with no payload, one line, no DBSS
    call; frames that are not envelopes are ignored; the reader lives on and serves a genuine command."""
    h, recorder, fake = socket_bot
    for payload in broken_payloads:
        before = len(recorder.refusals_of("bot.slack.socket_mode"))
        sent = fake.send_interactive(payload)
        ack = eventually(lambda sent=sent: fake.ack(sent), what="the ack")
        assert ack.payload is None, payload
        assert len(recorder.refusals_of("bot.slack.socket_mode")) == before + 1, payload
    for kind, payload in [
        ("interactive", [1, 2]),
        ("interactive", "text"),
        ("slash_commands", {"command": "/dbss-reboot", "user_id": ALICE}),
        ("slash_commands", {**command_form(h), "text": 5}),
        ("events_api", {"type": "event_callback", "event": {"type": "app_mention"}}),
        ("something", {}),
    ]:
        sent = fake.send(kind, payload, accepts_response_payload=True)
        assert eventually(lambda sent=sent: fake.ack(sent), what="the ack").payload is None
    for frame in ["not json", "[1]", '{"envelope_id": 5, "payload": {}}', "[" * 100_000, '{"type": "interactive"}']:
        fake.send_raw(frame)
    h.drain()
    assert recorder.tracebacks() == []
    assert h.dbss.list_requests() == [] and h.dbss.reboot_requests() == []
    sent = fake.send_command(command_form(h, text=INSTANCE_ID))
    eventually(lambda: fake.ack(sent), what="the genuine command's ack")
    h.wait_for_card()
    assert len(fake.connections) == 1 and recorder.tracebacks() == []


# --- the guard's pure checks --------------------------------------------------------------------------------------


def test_the_signature_is_checked_on_the_raw_bytes_before_anything_else() -> None:
    """check_signature: missing headers, a timestamp that is not digits or more than 5 minutes off either way, a
    wrong digest; the right one over bytes that are not even UTF-8 holds."""
    secret, now, body = b"s3cret", 1_700_000_000.0, b"\xff\xfe not utf-8"
    good = sign_bytes(body, secret="s3cret", timestamp=int(now))
    ts, sig = good["X-Slack-Request-Timestamp"], good["X-Slack-Signature"]
    assert guard.check_signature(body, ts, sig, secret=secret, now=now) is None
    assert guard.check_signature(body, ts, sig, secret=secret, now=now + 300) is None
    assert "stale" in str(guard.check_signature(body, ts, sig, secret=secret, now=now + 301))
    assert "stale" in str(guard.check_signature(body, ts, sig, secret=secret, now=now - 301))
    assert "no Slack signature" in str(guard.check_signature(body, None, sig, secret=secret, now=now))
    assert "no Slack signature" in str(guard.check_signature(body, ts, "", secret=secret, now=now))
    assert "malformed" in str(guard.check_signature(body, "-1", sig, secret=secret, now=now))
    # Arabic-Indic digits: digits to str.isdigit(), and int() reads them too, but Slack sends ASCII only.
    assert "malformed" in str(guard.check_signature(body, "\u0661" * 10, sig, secret=secret, now=now))
    assert "wrong" in str(guard.check_signature(body + b"x", ts, sig, secret=secret, now=now))
    assert "wrong" in str(guard.check_signature(body, ts, sig, secret=b"other", now=now))


def test_an_unsigned_ssl_check_is_answered_200_as_bolt_answers_it() -> None:
    """Slack's certificate probe: 200 with nothing done, signed or not (and not logged as a refusal)."""
    refusal = guard.screen(
        b"ssl_check=1&token=x", timestamp=None, signature=None, content_type=None, secret=b"s", now=0.0
    )
    assert refusal == guard.Refusal(200, "ssl_check")
    assert guard.screen(
        b"ssl_check=1&payload=x", timestamp=None, signature=None, content_type=None, secret=b"s", now=0.0
    ) == guard.Refusal(401, "no Slack signature")


def test_a_well_formed_envelope_of_each_kind_passes(bot: tuple[Harness, Recorder]) -> None:
    """check_envelope lets through what Slack sends: a command's form and each surface's payload."""
    h, _ = bot
    assert guard.check_envelope({"type": "slash_commands", "envelope_id": "e", "payload": command_form(h)}) is None
    for payload in surfaces(h).values():
        assert guard.check_envelope({"type": "interactive", "envelope_id": "e", "payload": payload}) is None
    assert "retry_attempt" in str(
        guard.check_envelope({"type": "interactive", "envelope_id": "e", "payload": {}, "retry_attempt": "1"})
    )
