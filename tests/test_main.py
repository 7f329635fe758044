"""`python -m bot` as a real process: configuration errors, and HTTP mode under gunicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bot.core.store import StateStore
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.harness import INCIDENTS, SIGNING_SECRET, eventually
from tests.processes import BotProcess, bot_env, command_body, confirm_body

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


def test_http_mode_serves_healthz_and_signed_commands(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The real entry point under gunicorn: /healthz is 200, a signed command is acked and the card is posted."""
    bot = BotProcess(bot_env(fake_dbss, fake_slack, tmp_path / "state.sqlite3"), tmp_path, mode=None, capture=True)
    try:
        started = time.monotonic()
        response = bot.post(command_body(fake_slack))
        assert response.status_code == 200 and time.monotonic() - started < 3
        eventually(lambda: fake_slack.calls("chat.postMessage"), timeout=10, what="the card")
        assert fake_slack.calls("chat.postMessage")[0]["channel"] == INCIDENTS
    finally:
        _, err = bot.terminate()
    assert "Booting worker" in err
    assert "good-token" not in err and SIGNING_SECRET not in err and BOT_TOKEN not in err


def test_sigterm_finishes_the_reboot_in_hand_and_keeps_the_follow_up(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """SIGTERM during a DBSS call: the call completes, its outcome reaches the thread, the follow-up stays
    in the state store for the next start, and the process exits 0."""
    state = tmp_path / "state.sqlite3"
    fake_dbss.delays["reboot"] = 1.5
    bot = BotProcess(bot_env(fake_dbss, fake_slack, state, BOT_POLL_INTERVAL_SECONDS="60"), tmp_path)
    try:
        bot.post(command_body(fake_slack))
        eventually(lambda: fake_slack.messages, timeout=10, what="the card")
        card = next(iter(fake_slack.messages.values()))
        assert bot.post(confirm_body(fake_slack, card)).status_code == 200
        eventually(lambda: fake_dbss.reboot_requests(), timeout=10, what="the reboot to be in flight")
    finally:
        code, _ = bot.terminate()
    assert code == 0
    assert fake_dbss.reboots_done == [INSTANCE_ID]
    assert any("DBSS accepted" in m.text for m in fake_slack.thread(INCIDENTS, card.ts))
    store = StateStore(state)
    assert [f.instance_id for f in store.active_followups()] == [INSTANCE_ID]
    assert [e.detail for e in store.audit() if e.event == "outcome_reported"] == ["thread"]
    assert [e.outcome for e in store.audit(instance_id=INSTANCE_ID) if e.event == "reboot_result"] == ["accepted"]
    store.close()


def test_log_level_warning_quiets_the_bot_and_gunicorn(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """LOG_LEVEL=WARNING: no info lines, neither the bot's nor gunicorn's ("Booting worker")."""
    bot = BotProcess(
        bot_env(fake_dbss, fake_slack, tmp_path / "s.sqlite3", LOG_LEVEL="WARNING"), tmp_path, capture=True
    )
    bot.post(command_body(fake_slack))
    eventually(lambda: fake_slack.calls("chat.postMessage"), timeout=10, what="the card")
    code, err = bot.terminate()
    assert code == 0
    assert "Booting worker" not in err and "[INFO]" not in err and '"level": "info"' not in err


def test_log_level_debug_shows_debug_records_and_no_secret(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """LOG_LEVEL=debug (any case): debug records from the bot's libraries and gunicorn, and still no secret:
    not the Slack token or signing secret, the IAM password, or the IAM token (httpcore is held at INFO)."""
    env = bot_env(fake_dbss, fake_slack, tmp_path / "s.sqlite3", LOG_LEVEL="debug")
    del env["DBSS_AUTH_TOKEN"]
    password = "correct horse battery staple"
    env.update(
        DBSS_IAM_ENDPOINT=fake_dbss.url, DBSS_IAM_DOMAIN="acme", DBSS_IAM_USER="oncall-bot", DBSS_IAM_PASSWORD=password
    )
    bot = BotProcess(env, tmp_path, capture=True)
    try:
        bot.post(command_body(fake_slack))
        eventually(lambda: fake_slack.calls("chat.postMessage"), timeout=10, what="the card")
    finally:
        code, err = bot.terminate()
    assert code == 0
    assert '"level": "debug"' in err and "[DEBUG]" in err
    [iam_token] = fake_dbss.tokens - {"good-token"}
    for secret in (BOT_TOKEN, SIGNING_SECRET, password, iam_token):
        assert secret not in err


def test_http_mode_with_metadata_credentials(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """The bot as a process with DBSS_METADATA_CREDENTIALS: the card's list call and the confirmed reboot are
    signed with the agency's one temporary key, fetched once, its security token sent and never logged."""
    env = bot_env(fake_dbss, fake_slack, tmp_path / "s.sqlite3", BOT_POLL_INTERVAL_SECONDS="60")
    del env["DBSS_AUTH_TOKEN"]
    env.update(DBSS_METADATA_CREDENTIALS="true", DBSS_METADATA_ENDPOINT=fake_dbss.url)
    bot = BotProcess(env, tmp_path, capture=True)
    try:
        bot.post(command_body(fake_slack))
        eventually(lambda: fake_slack.messages, timeout=10, what="the card")
        card = next(iter(fake_slack.messages.values()))
        assert bot.post(confirm_body(fake_slack, card)).status_code == 200
        eventually(lambda: fake_dbss.reboots_done, timeout=10, what="the reboot")
    finally:
        _, err = bot.terminate()
    with fake_dbss.lock:
        [key] = fake_dbss.temporary_keys.values()
    assert len(fake_dbss.metadata_requests()) == 1
    signed = fake_dbss.list_requests() + fake_dbss.reboot_requests()
    assert signed and all(r.headers["x-security-token"] == key.security_token for r in signed)
    assert all(f"Access={key.access}," in r.headers["authorization"] for r in signed)
    assert fake_dbss.reboots_done == [INSTANCE_ID]
    assert key.secret not in err and key.security_token not in err


def test_sigusr1_writes_every_threads_stack_and_the_bot_goes_on(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """`kill -USR1` on gunicorn's master: the worker writes every thread's stack to stderr (the acks-first gate's
    releaser among them), and goes on serving; SIGTERM still stops it cleanly."""
    bot = BotProcess(bot_env(fake_dbss, fake_slack, tmp_path / "state.sqlite3"), tmp_path, capture=True)
    try:
        os.kill(bot.proc.pid, signal.SIGUSR1)
        time.sleep(0.5)
        assert bot.healthy() and bot.proc.poll() is None
    finally:
        code, err = bot.terminate()
    assert code == 0
    assert "Thread 0x" in err and "(most recent call first)" in err
    assert "bot/slack/priority.py" in err and "_release" in err


def test_sigusr1_without_another_handler_does_not_end_the_process() -> None:
    """Socket Mode has no handler of its own for SIGUSR1, whose default ends the process: the stacks are written
    and the process lives on."""
    code = (
        "import os, signal, time\n"
        "from bot import logs\n"
        "logs.dump_stacks_on_signal()\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
        "time.sleep(0.2)\n"
        "print('still here')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, "still here\n")
    assert "Current thread 0x" in done.stderr and "(most recent call first)" in done.stderr
