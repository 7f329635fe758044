"""Hostile input, property-based: random command text and interactivity payloads through Bolt's signed
request path. Never a 5xx, never an unhandled error, never a DBSS reboot without a genuine confirmation."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt.request import BoltRequest

from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, BOB, INCIDENTS, MALLORY, RANDOM, Harness, eventually, sign

USERS = st.sampled_from([ALICE, BOB, MALLORY, "", "U" + "9" * 40, "<!channel>", "W123"])
CHANNELS = st.sampled_from([INCIDENTS, RANDOM, "", "D123", "C" + "X" * 300])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
EXAMPLES = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)


class ErrorLog(logging.Handler):
    """Records every error logged by the bot or Bolt while a property runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def hostile(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> Iterator[tuple[Harness, ErrorLog]]:
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_allowed_channels=INCIDENTS)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        yield h, errors
    finally:
        logging.getLogger().removeHandler(errors)
        h.stop()


def dispatch(h: Harness, body: str) -> Any:
    headers = {"content-type": ["application/x-www-form-urlencoded"], **{k.lower(): [v] for k, v in sign(body).items()}}
    return h.bot.app.dispatch(BoltRequest(body=body, headers=headers))


@EXAMPLES
@given(
    text=st.text(max_size=300) | st.text(alphabet="abc-/ .:<>!@", min_size=1000, max_size=5000),
    user=USERS,
    channel=CHANNELS,
)
def test_any_command_text_is_answered_and_never_reboots(
    hostile: tuple[Harness, ErrorLog], text: str, user: str, channel: str
) -> None:
    h, errors = hostile
    body = urlencode(
        {
            "command": "/dbss-reboot",
            "text": text,
            "user_id": user,
            "channel_id": channel,
            "team_id": "T1",
            "response_url": h.hook_url(),
        }
    )
    response = dispatch(h, body)
    assert response.status == 200
    if response.body:
        answer = json.loads(response.body)
        assert answer["response_type"] == "ephemeral" and answer["text"]
        assert "<!channel>" not in answer["text"] and "<@" not in answer["text"].replace(f"<@{user}>", "")
    h.drain()
    assert h.dbss.reboot_requests() == []
    assert errors.records == []


def genuine_token(h: Harness, **overrides: Any) -> str:
    fields = {"instance_id": INSTANCE_ID, "requester": ALICE, "channel": INCIDENTS, "expires_at": int(time.time()) + 60}
    fields["generation"] = h.bot.store.generation()  # as the bot issues them: bound to its state store
    fields.update(overrides)
    return h.bot.service._signer.issue(**fields)[1]


def tampered_expiry(h: Harness) -> str:
    payload, mac = genuine_token(h).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["e"] += 3600
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{forged}.{mac}"


@EXAMPLES
@given(
    value=st.one_of(
        st.text(max_size=200),
        JSON,
        st.just("tampered-expiry"),
        st.sampled_from(["other-user", "other-channel", "expired", "other-instance-format"]),
    ),
    clicker=USERS,
    channel=CHANNELS,
    action=st.sampled_from(["dbss_reboot_confirm", "dbss_reboot_cancel", "dbss_reboot_pick", "other"]),
    drop=st.sets(st.sampled_from(["user", "channel", "container", "message", "response_url", "team"])),
    noise=st.dictionaries(st.text(max_size=8), JSON, max_size=3),
)
def test_any_click_payload_is_refused_cleanly(
    hostile: tuple[Harness, ErrorLog],
    value: Any,
    clicker: str,
    channel: str,
    action: str,
    drop: set[str],
    noise: dict[str, Any],
) -> None:
    """Forged, replayed, retargeted or malformed clicks: no 5xx, no error, no reboot."""
    h, errors = hostile
    if value == "tampered-expiry":
        value = tampered_expiry(h)
    elif value == "other-user":
        value = genuine_token(h, requester=BOB)
    elif value == "other-channel":
        value = genuine_token(h, channel=RANDOM)
    elif value == "expired":
        value = genuine_token(h, expires_at=int(time.time()) - 5)
    elif value == "other-instance-format":
        value = genuine_token(h, instance_id="../" + "a" * 40)
    payload: dict[str, Any] = {
        **noise,
        "type": "block_actions",
        "user": {"id": clicker},
        "team": {"id": "T1"},
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel},
        "message": {
            "ts": "1700000000.000001",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}],
        },
        "response_url": h.hook_url(),
        "actions": [{"action_id": action, "value": value, "selected_option": {"value": value}}],
    }
    for key in drop:
        payload.pop(key, None)
    response = dispatch(h, urlencode({"payload": json.dumps(payload)}))
    assert response.status < 500
    h.drain()
    assert h.dbss.reboot_requests() == []
    assert errors.records == []


def test_refused_clicks_get_a_clear_private_answer(hostile: tuple[Harness, ErrorLog]) -> None:
    """The structured forgeries each reach the clicker as a private refusal that says why."""
    h, _ = hostile
    cases = {
        tampered_expiry(h): "not issued by this bot",
        genuine_token(h, channel=RANDOM): "another channel",
        genuine_token(h, requester=BOB): "Only the person who asked",
        "garbage": "not issued by this bot",
    }
    for value, expected in cases.items():
        hook = h.hook_url()
        payload = {
            "type": "block_actions",
            "user": {"id": ALICE},
            "team": {"id": "T1"},
            "channel": {"id": INCIDENTS},
            "container": {"type": "message", "message_ts": "1.2", "channel_id": INCIDENTS},
            "response_url": hook,
            "actions": [{"action_id": "dbss_reboot_confirm", "value": value}],
        }
        assert dispatch(h, urlencode({"payload": json.dumps(payload)})).status == 200
        # Answers to a click go through the outbox's deliverer, after the listener's pools have drained.
        [answer] = eventually(
            lambda hook=hook: [r.json for r in h.slack.hooks() if r.path == hook.removeprefix(h.slack.url)],
            what="the private refusal",
        )
        assert expected in answer["text"] and answer["response_type"] == "ephemeral"
    assert h.dbss.reboot_requests() == []
