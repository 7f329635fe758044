"""Process-level settings of the server: the frozen heap, correlation IDs without system calls, and
gunicorn's own GUNICORN_CMD_ARGS."""

from __future__ import annotations

import gc
import os
import re
import sys
from pathlib import Path

from bot.core.reboots import new_correlation_id
from bot.http_server import SWITCH_INTERVAL_SECONDS, prepare_worker, settle_heap
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.processes import BotProcess, bot_env
from tests.test_main import run_bot


def test_settle_heap_puts_every_live_object_out_of_the_collectors_reach() -> None:
    """A full collection walks only what was made after start-up (frozen objects are skipped)."""
    keep = [{"n": n} for n in range(5000)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(keep)
        assert not any(obj is keep for obj in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()


def test_the_worker_hands_the_interpreter_lock_over_within_a_millisecond() -> None:
    """A request thread back from its socket waits at most 1 ms, not CPython's 5 ms, for a busy background thread."""
    before = sys.getswitchinterval()
    try:
        prepare_worker()
        assert sys.getswitchinterval() == SWITCH_INTERVAL_SECONDS == 0.001
        assert gc.get_freeze_count() > 0
    finally:
        sys.setswitchinterval(before)
        gc.unfreeze()


def test_correlation_ids_are_short_hex_distinct_and_differ_after_a_fork() -> None:
    ids = {new_correlation_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same sequence as the parent unless random was reseeded at the fork
        os.write(write, new_correlation_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{12}", child) and child != new_correlation_id()


def test_gunicorn_cmd_args_are_honoured_except_what_the_bot_needs_fixed(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """GUNICORN_CMD_ARGS turns on the access log (to stdout) in the operator's format and replaces
    forwarded_allow_ips: loopback is no longer trusted, so its X-Forwarded-Proto is ignored. --workers is
    refused with a warning: still one worker process."""
    args = (
        "--access-logfile - --access-logformat 'access %(m)s %(U)s %(s)s scheme=%({wsgi.url_scheme}e)s' "
        "--forwarded-allow-ips 192.0.2.1 --workers 3"
    )
    env = bot_env(fake_dbss, fake_slack, tmp_path / "s.sqlite3", GUNICORN_CMD_ARGS=args)
    bot = BotProcess(env, tmp_path, capture=True)
    try:
        assert bot.http.get("/healthz", headers={"X-Forwarded-Proto": "https"}).status_code == 200
        workers = Path(f"/proc/{bot.proc.pid}/task/{bot.proc.pid}/children").read_text().split()
    finally:
        code, err = bot.terminate()
    assert code == 0 and len(workers) == 1
    assert "access GET /healthz 200 scheme=http\n" in bot.stdout
    assert "GUNICORN_CMD_ARGS: workers is ignored" in err


def test_forwarded_proto_is_trusted_from_loopback_by_default(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The contrast to the test above: with gunicorn's default forwarded_allow_ips (loopback), the same request
    is seen as https."""
    args = "--access-logfile - --access-logformat 'access %(U)s scheme=%({wsgi.url_scheme}e)s'"
    bot = BotProcess(
        bot_env(fake_dbss, fake_slack, tmp_path / "s.sqlite3", GUNICORN_CMD_ARGS=args), tmp_path, capture=True
    )
    try:
        bot.http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    finally:
        bot.terminate()
    assert "access /healthz scheme=https\n" in bot.stdout


def test_an_unknown_gunicorn_option_is_a_clear_start_up_error(tmp_path: Path) -> None:
    env = {
        "DBSS_PROJECT_ID": "p",
        "DBSS_AUTH_TOKEN": "t",
        "SLACK_BOT_TOKEN": "x",
        "SLACK_SIGNING_SECRET": "s",
        "BOT_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "GUNICORN_CMD_ARGS": "--no-such-option",
    }
    proc = run_bot(["http"], env, tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "GUNICORN_CMD_ARGS: error: unrecognized arguments: --no-such-option" in err
