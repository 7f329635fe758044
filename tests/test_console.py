"""The break-glass console beside the bot: shared locks and cooldowns, its own follow-ups, its own recovery,
break-glass second approval, and API text made inert before it reaches the terminal."""

from __future__ import annotations

import io
import os
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

from bot.__main__ import run_console
from bot.config import Settings
from bot.core.redis_state import RedisBackedStore
from bot.core.store import FollowUp, StateStore
from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, INCIDENTS, Harness, eventually

ROOT = Path(__file__).resolve().parent.parent
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what a terminal would act on (newline and tab aside)


def console_env(dbss: FakeDbss, state: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DBSS_PROJECT_ID": PROJECT_ID,
        "DBSS_ENDPOINT": dbss.url,
        "DBSS_AUTH_TOKEN": "good-token",
        "DBSS_TIMEOUT_SECONDS": "5",
        "BOT_STATE_PATH": str(state),
        "BOT_POLL_INTERVAL_SECONDS": "0.1",
        **extra,
    }


def console(env: dict[str, str], cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot console` as a process, typed into through stdin."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def console_settings(tmp_path: Path, dbss: FakeDbss, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "dbss_project_id": PROJECT_ID,
        "dbss_endpoint": dbss.url,
        "dbss_auth_token": "good-token",
        "dbss_timeout_seconds": 5,
        "bot_state_path": str(tmp_path / "state.sqlite3"),
        "bot_poll_interval_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_with_redis_the_console_honours_the_bots_cooldowns_and_locks(
    tmp_path: Path, fake_dbss: FakeDbss, redis_url: str
) -> None:
    """With REDIS_URL, a reboot the bot just made (cooldown) and one it has in flight (lock) are refused at the
    console, which keeps its own BOT_STATE_PATH: DBSS gets no reboot."""
    bot = RedisBackedStore.from_url(tmp_path / "bot.sqlite3", redis_url)
    try:
        bot.record("reboot_result", correlation_id="c1", user_id=ALICE, instance_id=INSTANCE_ID, outcome="accepted")
        taken, _ = bot.acquire_lock(
            OTHER_ID, owner=ALICE, channel=INCIDENTS, thread_ts="1.1", correlation_id="c2", ttl_seconds=600
        )
        assert taken
    finally:
        bot.close()
    env = console_env(fake_dbss, tmp_path / "console.sqlite3", REDIS_URL=redis_url)
    done = console(env, tmp_path, f"{INSTANCE_ID}\nreboot\n{OTHER_ID}\nreboot\nquit\n")
    assert done.returncode == 0, done.stderr
    assert f"this instance was rebooted by @{ALICE}" in done.stdout
    assert f"already in flight, started by @{ALICE} (ref c2)" in done.stdout
    assert fake_dbss.reboot_requests() == []


def test_the_console_and_the_bot_leave_each_others_follow_ups_alone(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """On the bot's state file, the console follows its own reboot to the end without touching the bot's
    follow-up, and keeps its own out of the store where the bot's follower would take it."""
    state = tmp_path / "state.sqlite3"
    store = StateStore(state)
    now = time.time()
    theirs = FollowUp("bot-ref", OTHER_ID, ALICE, ALICE, INCIDENTS, "1.1", now, now + 600)
    store.add_followup(theirs)
    fake_dbss.reboot_polls = 20  # about two seconds at the console's 0.1 s interval
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "console"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=console_env(fake_dbss, state),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{INSTANCE_ID}\nreboot\n")
        proc.stdin.flush()
        while "DBSS accepted" not in (line := proc.stdout.readline()):
            assert line, "the console ended before DBSS accepted"
        assert store.active_followups() == [theirs], "the console's follow-up is not the bot's follower's to take"
        out, err = proc.communicate("quit\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"{INSTANCE_ID} is back to ACTIVE after" in out
    assert OTHER_ID not in out
    assert store.active_followups() == [theirs], "the bot's follow-up is untouched (no progress_ts='console')"
    store.close()

    # The bot starting on the same state file has nothing to tell about the console's reboot.
    h = Harness(tmp_path, fake_dbss, fake_slack)
    h.stop()
    assert [c for c in fake_slack.calls("chat.postMessage") if c.get("channel") == "console"] == []


def test_an_interrupted_console_reboot_is_told_at_the_console_not_in_slack(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The console killed during the DBSS call: the bot's start-up posts nothing for it; the console's next
    start tells it as 'outcome unknown' (once), and the audit trail keeps it."""
    state = tmp_path / "state.sqlite3"
    fake_dbss.delays["reboot"] = 30
    env = console_env(fake_dbss, state)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "console"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(f"{INSTANCE_ID}\nreboot\n")
        proc.stdin.flush()
        eventually(fake_dbss.reboot_requests, timeout=30, what="the console's reboot call")
    finally:
        proc.kill()
        proc.communicate()

    h = Harness(tmp_path, fake_dbss, fake_slack)
    h.stop()  # the start-up recovery has run, and the deliverer has sent what it had
    assert [c for c in fake_slack.calls("chat.postMessage") if c.get("channel") == "console"] == []

    first = console(env, tmp_path, "quit\n")
    assert first.returncode == 0, first.stderr
    assert f"Outcome unknown for {INSTANCE_ID}" in first.stdout and "console stopped" in first.stdout
    again = console(env, tmp_path, "quit\n")
    assert "Outcome unknown" not in again.stdout, "told once"
    store = StateStore(state)
    try:
        [result] = store.reboots(instance_id=INSTANCE_ID)
        assert result.outcome == "unknown" and result.channel == "console"
    finally:
        store.close()


def test_second_approver_break_glass_needs_another_os_user(tmp_path: Path, fake_dbss: FakeDbss) -> None:
    """With BOT_REQUIRE_SECOND_APPROVER, the console prints an approval code; the requester cannot use it; another
    operator reboots with it, once; the audit trail says who asked and who approved."""
    settings = console_settings(tmp_path, fake_dbss, bot_require_second_approver=True)
    out = io.StringIO()
    assert run_console(settings, user="console:alice", inp=io.StringIO(f"{INSTANCE_ID}\nquit\n"), out=out) == 0
    found = re.search(r"python -m bot console --approve (\S+)", out.getvalue())
    assert found, out.getvalue()
    code = found[1]
    assert fake_dbss.reboot_requests() == []

    # The requester's own OS user, through the real command line: refused.
    env = console_env(fake_dbss, tmp_path / "state.sqlite3", BOT_REQUIRE_SECOND_APPROVER="true")
    me = f"console:{pwd.getpwuid(os.geteuid()).pw_name}"
    mine = io.StringIO()
    assert run_console(settings, user=me, inp=io.StringIO(f"{INSTANCE_ID}\nquit\n"), out=mine) == 0
    own_code = re.search(r"--approve (\S+)", mine.getvalue())
    assert own_code
    refused = console(env, tmp_path, "reboot\n", "--approve", own_code[1])
    assert refused.returncode == 1 and "second operator" in refused.stdout, refused.stdout + refused.stderr
    assert fake_dbss.reboot_requests() == []

    # Alice cannot approve her own request; Bob can, once.
    own = io.StringIO()
    assert run_console(settings, user="console:alice", approve=code, inp=io.StringIO("reboot\n"), out=own) == 1
    assert "second operator" in own.getvalue() and fake_dbss.reboot_requests() == []
    bob = io.StringIO()
    assert run_console(settings, user="console:bob", approve=code, inp=io.StringIO("reboot\n"), out=bob) == 0
    assert "requested by console:alice, approved by console:bob" in bob.getvalue()
    assert f"{INSTANCE_ID} is back to ACTIVE" in bob.getvalue()
    replay = io.StringIO()
    assert run_console(settings, user="console:carol", approve=code, inp=io.StringIO("reboot\n"), out=replay) == 1
    assert len(fake_dbss.reboot_requests()) == 1
    store = StateStore(tmp_path / "state.sqlite3")
    try:
        confirmed = [e for e in store.audit(instance_id=INSTANCE_ID) if e.event == "confirmed"]
        assert [(e.user_id, e.detail) for e in confirmed] == [
            ("console:bob", "requested by console:alice, approved by console:bob")
        ]
    finally:
        store.close()


def test_api_text_reaches_the_terminal_inert(tmp_path: Path, fake_dbss: FakeDbss) -> None:
    """Names, statuses, tasks and error messages with ANSI escape sequences and control characters are shown
    escaped in every answer of the console: list, picker, status, card, refusal and DBSS error."""
    evil = "\x1b[2J\x1b[31mEVIL\x07"
    fake_dbss.instances.clear()
    fake_dbss.add_instance(INSTANCE_ID, evil)
    fake_dbss.add_instance(OTHER_ID, "\x1b]0;pwned\x07busy", status="\x9b31mACTIVE", task="\x1b[5mbackup\r")
    fake_dbss.instances[INSTANCE_ID].reboot_error = (400, "DBSS.10020132", "failed \x1b[8m\x1b]52;c;aGk=\x07hidden")
    env = console_env(fake_dbss, tmp_path / "state.sqlite3")
    script = f"list\n/dbss-reboot\n\nstatus {INSTANCE_ID}\n{OTHER_ID}\n{INSTANCE_ID}\nreboot\nquit\n"
    done = console(env, tmp_path, script)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "EVIL" in out and "pwned" in out and "hidden" in out and "backup" in out
    assert "DBSS refused the reboot" in out
    assert not CONTROL.search(out), [m[0] for m in CONTROL.finditer(out)][:5]
    assert "\\x1b[2J\\x1b[31mEVIL\\x07" in out, "shown escaped, so the operator sees what the API sent"
