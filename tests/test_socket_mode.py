"""`python -m bot socket` as a real process against a fake Socket Mode endpoint, the fake Web API and DBSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from bot.slack.socket_mode import Seen, SocketMode
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.harness import ALICE, INCIDENTS, MALLORY, button_value, eventually
from tests.processes import ROOT, bot_env

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as fake:
        fake_slack.socket_mode = fake
        yield fake


class SocketBot:
    """`python -m bot socket` in its own session, connected to the fake once `hello` has been sent. Its
    log goes to a file, not a pipe: a full pipe would stall the bot in a burst."""

    def __init__(self, env: dict[str, str], cwd: Path, socket_mode: FakeSocketMode) -> None:
        self.socket_mode = socket_mode
        self.health_port = int(env["BOT_HEALTH_PORT"])
        self.log = cwd / "bot.log"
        base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "socket"],
                env={**base, **env},
                cwd=cwd,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.wait_connections(1)

    def wait_connections(self, count: int, *, timeout: float = 30) -> None:
        """Until the fake has seen `count` connections and one of them is open."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bot exited with {self.proc.returncode}")
            return len(self.socket_mode.connections) >= count and bool(self.socket_mode.open_connections())

        eventually(ready, timeout=timeout, what=f"connection #{count}")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the bot process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime, fields 14 and 15

    def terminate(self) -> tuple[int, str]:
        """SIGTERM; the exit code and what the bot logged."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode, self.log.read_text()


@pytest.fixture
def bot(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, socket_mode: FakeSocketMode) -> Iterator[SocketBot]:
    env = bot_env(fake_dbss, fake_slack, tmp_path / "state.sqlite3", SLACK_APP_TOKEN=APP_TOKEN)
    running = SocketBot(env, tmp_path, socket_mode)
    yield running
    running.terminate()


def command(slack: FakeSlack, text: str = INSTANCE_ID, *, user: str = ALICE, hook: str = "1") -> dict[str, str]:
    """The payload of a `slash_commands` envelope: the fields of the HTTP form body of a slash command."""
    return {
        "token": "deprecated-verification-token",
        "team_id": "T1",
        "team_domain": "acme",
        "channel_id": INCIDENTS,
        "channel_name": "incident",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/dbss-reboot",
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": "false",
        "response_url": f"{slack.url}/hooks/{hook}",
        "trigger_id": "1.2.3",
    }


def confirm_click(slack: FakeSlack, card: Any, *, user: str = ALICE, hook: str = "2") -> dict[str, Any]:
    """The block_actions payload of a click on the card's Reboot button."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "acme"},
        "container": {"type": "message", "message_ts": card.ts, "channel_id": INCIDENTS, "is_ephemeral": False},
        "trigger_id": "4.5.6",
        "channel": {"id": INCIDENTS, "name": "incident"},
        "message": {"type": "message", "ts": card.ts, "text": card.text, "blocks": card.blocks, "user": "UBOT"},
        "response_url": f"{slack.url}/hooks/{hook}",
        "actions": [
            {
                "action_id": "dbss_reboot_confirm",
                "block_id": "dbss_reboot_actions",
                "value": button_value(card, "dbss_reboot_confirm"),
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }


def cards(slack: FakeSlack) -> list[Any]:
    with slack.lock:
        return [m for m in slack.messages.values() if m.thread_ts is None]


def acked(socket_mode: FakeSocketMode, envelope_id: str, *, timeout: float = 10) -> float:
    """Wait for the ack of an envelope; seconds it took."""
    eventually(lambda: socket_mode.ack(envelope_id), timeout=timeout, what=f"the ack of {envelope_id}")
    delay = socket_mode.ack_delay(envelope_id)
    assert delay is not None
    return delay


def test_command_card_confirm_and_outcome_over_the_socket(
    bot: SocketBot, socket_mode: FakeSocketMode, fake_slack: FakeSlack, fake_dbss: FakeDbss
) -> None:
    """Command → ack → card in the channel; click → ack → one DBSS reboot → the outcome in the card's thread."""
    sent = socket_mode.send_command(command(fake_slack))
    assert acked(socket_mode, sent) < 3
    ack = socket_mode.ack(sent)
    assert ack is not None and ack.connection == 1  # the ack says what is happening; the card follows
    assert ack.payload == {"response_type": "ephemeral", "text": f":mag: Looking up `{INSTANCE_ID}`…"}
    [card] = eventually(lambda: cards(fake_slack), timeout=10, what="the card")
    assert card.channel == INCIDENTS and INSTANCE_ID in str(card.blocks)
    assert fake_dbss.reboot_requests() == []

    clicked = socket_mode.send_interactive(confirm_click(fake_slack, card))
    assert acked(socket_mode, clicked) < 3
    [reply] = eventually(lambda: fake_slack.thread(INCIDENTS, card.ts), timeout=10, what="the outcome")
    assert "DBSS accepted the reboot" in reply.text and INSTANCE_ID in reply.text
    assert [r.json for r in fake_dbss.reboot_requests()] == [{"instance_id": INSTANCE_ID}]
    assert len(fake_slack.calls("apps.connections.open")) == 1 and socket_mode.unknown == []


def test_refusal_is_in_the_ack_and_nothing_else_happens(
    bot: SocketBot, socket_mode: FakeSocketMode, fake_slack: FakeSlack, fake_dbss: FakeDbss
) -> None:
    """Mallory is not on the allow-list: the ack itself carries the private refusal; no card, no DBSS call."""
    sent = socket_mode.send_command(command(fake_slack, user=MALLORY))
    acked(socket_mode, sent)
    payload = socket_mode.ack(sent).payload  # type: ignore[union-attr]
    assert payload is not None and payload["response_type"] == "ephemeral"
    assert payload["text"].startswith(":no_entry:") and "allow-list" in payload["text"]
    time.sleep(0.5)  # anything the bot would wrongly do next has had time to reach the fakes
    assert cards(fake_slack) == [] and fake_dbss.reboot_requests() == []


def test_refresh_requested_moves_to_a_new_connection_and_acks_there_at_once(
    bot: SocketBot, socket_mode: FakeSocketMode, fake_slack: FakeSlack
) -> None:
    """Slack's `disconnect` (refresh_requested): the bot opens a second connection, a command sent on it is
    acked at once (not after the old connection has finished closing), the old one is still read until it
    closes, and no third connection follows."""
    old = socket_mode.refresh(close_after=3.5)
    bot.wait_connections(2, timeout=10)
    new = socket_mode.open_connections()[-1]
    assert new.index == 2 and old.open  # make before break: the old one is still open
    sent = socket_mode.send_command(command(fake_slack, hook="new"), connection=new.index)
    delay = acked(socket_mode, sent)
    assert delay < 1.0, f"the ack on the new connection waited {delay:.2f}s"
    late = socket_mode.send_command(command(fake_slack, hook="old"), connection=old.index)
    assert acked(socket_mode, late) < 1.0
    assert [socket_mode.ack(e).connection for e in (sent, late)] == [new.index, old.index]  # type: ignore[union-attr]
    eventually(lambda: len(cards(fake_slack)) == 2, timeout=10, what="both cards")
    eventually(lambda: not old.open, timeout=10, what="the old connection to close")
    time.sleep(1)  # the old connection's end must not start a third one
    assert len(socket_mode.connections) == 2 and len(fake_slack.calls("apps.connections.open")) == 2
    assert new.open and socket_mode.rejected == []


def test_abrupt_drop_is_replaced_within_seconds_without_spinning(
    bot: SocketBot, socket_mode: FakeSocketMode, fake_slack: FakeSlack
) -> None:
    """The TCP connection dies with no close frame: a new connection is open within a few seconds, the bot
    does not burn CPU meanwhile (slack_sdk's builtin client spun a core for about a minute), and a command
    on the new connection is acked at once."""
    time.sleep(0.5)  # let start-up work (auth.test, the state file) finish before measuring CPU
    cpu_before = bot.cpu_seconds()
    dropped_at = time.monotonic()
    socket_mode.drop()
    bot.wait_connections(2, timeout=15)
    reconnect_seconds = socket_mode.connections[1].opened_at - dropped_at
    assert reconnect_seconds < 5, f"reconnected after {reconnect_seconds:.1f}s"
    time.sleep(max(0.0, dropped_at + 3 - time.monotonic()))
    cpu_used = bot.cpu_seconds() - cpu_before
    assert cpu_used < 1.0, f"{cpu_used:.2f}s of CPU in the 3s after the drop"
    sent = socket_mode.send_command(command(fake_slack))
    assert acked(socket_mode, sent) < 1.0
    eventually(lambda: cards(fake_slack), timeout=10, what="the card")
    assert len(fake_slack.calls("apps.connections.open")) == 2


@pytest.mark.slow  # waits out the real ping interval and timeout (5 s each)
def test_silent_connection_is_replaced_once_its_pings_go_unanswered(
    bot: SocketBot, socket_mode: FakeSocketMode, fake_slack: FakeSlack
) -> None:
    """A connection that goes silent without closing (a NAT forgetting it): after the bot's ping timeout
    (5 s pings, 5 s to answer) it opens a new connection, and a command on it is acked."""
    frozen_at = time.monotonic()
    socket_mode.freeze()
    bot.wait_connections(2, timeout=30)
    assert socket_mode.connections[1].opened_at - frozen_at < 20
    sent = socket_mode.send_command(command(fake_slack))
    assert acked(socket_mode, sent) < 1.0


def test_three_hundred_envelopes_back_to_back_are_all_acked_within_3s(
    bot: SocketBot, socket_mode: FakeSocketMode, fake_slack: FakeSlack
) -> None:
    """300 commands pushed back to back on one connection: each is acked within Slack's 3 seconds."""
    ids = socket_mode.send_many([("slash_commands", command(fake_slack, hook=str(i)), True) for i in range(300)])
    eventually(lambda: all(socket_mode.ack(i) for i in ids), timeout=30, what="all 300 acks")
    delays = sorted(socket_mode.ack_delay(i) or 0.0 for i in ids)
    assert delays[-1] < 3.0, f"slowest ack {delays[-1]:.2f}s, median {delays[150]:.2f}s"
    assert len(socket_mode.acks) == 300 and socket_mode.unknown == []  # each acked once, nothing else sent


def test_sigterm_exits_zero(bot: SocketBot, socket_mode: FakeSocketMode) -> None:
    """SIGTERM: the bot closes its connection and exits 0, its log free of tracebacks and tokens."""
    code, log = bot.terminate()
    assert code == 0, log
    assert "stopped" in log and "Traceback" not in log
    assert APP_TOKEN not in log and BOT_TOKEN not in log
    eventually(lambda: not socket_mode.open_connections(), timeout=5, what="the connection to close")
    assert [c.ended_by for c in socket_mode.connections] == ["client"]


def test_a_wrong_app_token_stops_the_start_with_a_clear_message(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    """Slack refuses the app-level token: exit code 1, the log says so and names SLACK_APP_TOKEN."""
    env = bot_env(fake_dbss, fake_slack, tmp_path / "state.sqlite3", SLACK_APP_TOKEN="xapp-1-A1-revoked")
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "socket"], env={**base, **env}, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "invalid_auth" in proc.stderr and "SLACK_APP_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
    assert "xapp-1-A1-revoked" not in proc.stderr and socket_mode.connections == []


def test_connected_says_whether_a_connection_is_up(fake_slack: FakeSlack, socket_mode: FakeSocketMode) -> None:
    """`SocketMode.connected()`, for a readiness check: true once Slack said hello, false while a dropped
    connection cannot be replaced (apps.connections.open failing once), true again after the retry, false
    after close()."""
    app = App(client=WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/"))
    socket = SocketMode(app, app_token=APP_TOKEN)
    assert not socket.connected()
    socket.connect()
    try:
        eventually(socket.connected, what="hello")
        fake_slack.fail_next("apps.connections.open", "internal_error")
        socket_mode.drop()
        eventually(lambda: not socket.connected(), what="the drop to be seen")
        eventually(socket.connected, what="the retry", timeout=10)
        assert len(socket_mode.connections) == 2 and len(fake_slack.calls("apps.connections.open")) == 3
    finally:
        socket.close()
    assert not socket.connected()


def test_a_redelivered_envelope_is_acknowledged_and_not_handled_twice(
    fake_slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    """Slack delivers an envelope again (its ack was late, or the connection changed): the copy is acknowledged
    with nothing done, so a command posts one card, not two. An envelope whose handling failed (no ack) is
    handled again when it comes back."""
    app = App(client=WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/"))
    handled: list[str] = []

    @app.command("/dbss-reboot")
    def on_command(ack: Any, body: dict[str, Any]) -> None:
        handled.append(body["text"])
        if body["text"] == "fails once" and handled.count("fails once") == 1:
            raise RuntimeError("a listener that fails the first time")
        ack("on it")

    socket = SocketMode(app, app_token=APP_TOKEN)
    socket.connect()
    try:
        eventually(socket.connected, what="hello")
        sent = socket_mode.send_command(command(fake_slack, "once"))
        acked(socket_mode, sent)
        socket_mode.redeliver(sent)
        acked(socket_mode, sent)
        assert socket_mode.ack(sent).payload is None  # type: ignore[union-attr]  # the copy: nothing done
        failing = socket_mode.send_command(command(fake_slack, "fails once"))
        time.sleep(0.3)
        assert socket_mode.ack(failing) is None
        socket_mode.redeliver(failing)
        acked(socket_mode, failing)
        assert handled == ["once", "fails once", "fails once"]
    finally:
        socket.close()


def test_the_envelopes_remembered_are_bounded_in_time_and_number() -> None:
    """A key is a repeat within the window and new after it; at most `limit` are kept, the oldest going first."""
    now = [0.0]
    seen = Seen(600.0, limit=3, clock=lambda: now[0])
    assert seen.first("a") and not seen.first("a")
    now[0] = 601.0
    assert seen.first("a"), "outside the window: new again"
    for key in ("b", "c", "d"):
        assert seen.first(key)
    assert len(seen) == 3 and seen.first("a"), "the oldest was let go to keep the bound"
