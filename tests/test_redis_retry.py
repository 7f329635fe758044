"""A Redis write that timed out is never sent again: it runs once, and the person is told what is true.

A real redis-server is made slower than the client's timeout by a long Lua script from another connection (Redis
runs one command at a time, so the bot's write waits behind it and runs after the client gave up). MONITOR, on a
connection of its own, records every command Redis runs: that is what is counted.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.core.redis_state import RedisBackedStore, redis_client
from bot.core.store import StateUnavailable
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, Harness, eventually

# Busy for ARGV[1] microseconds of Redis' clock: every other client waits. TIME is read once every million turns
# of an empty loop (a few milliseconds), since MONITOR reports each call.
BUSY = (
    "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + ARGV[1] local now = t "
    "while now[1] * 1000000 + now[2] < stop do for _ = 1, 1000000 do end now = redis.call('TIME') end return 1"
)
TIMEOUT = 0.5  # the bot's client, in these tests; its own default is 5 s
CLAIM = '"SET" "dbss-bot:used:'  # claim_confirmation's write, as MONITOR shows it


class Monitor:
    """Every command Redis runs, as MONITOR reports it, read on a thread of its own."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=10)
        self._sock.sendall(b"MONITOR\r\n")
        self._buffer = b""
        self.lines: list[str] = []
        self._lock = threading.Lock()
        first = self._read_line()
        assert first == "+OK", first
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read_line(self) -> str | None:
        while b"\r\n" not in self._buffer:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def _run(self) -> None:
        while (line := self._read_line()) is not None:
            with self._lock:
                self.lines.append(line)

    def count(self, fragment: str) -> int:
        with self._lock:
            return sum(fragment in line for line in self.lines)

    def close(self) -> None:
        self._sock.close()
        self._thread.join(timeout=5)


@contextmanager
def monitor(url: str) -> Iterator[Monitor]:
    m = Monitor(url)
    try:
        yield m
    finally:
        m.close()


@contextmanager
def redis_busy(url: str, seconds: float) -> Iterator[None]:
    """Redis runs a script for `seconds` from another connection; on exit, waits until it has finished."""
    admin = redis.Redis.from_url(url, socket_timeout=seconds + 10)
    answers: list[object] = []
    script = threading.Thread(
        target=lambda: answers.append(admin.eval(BUSY, 0, str(int(seconds * 1_000_000)))), daemon=True
    )
    script.start()
    time.sleep(0.2)  # the script has reached Redis: what is sent now waits behind it
    try:
        yield
    finally:
        script.join(timeout=seconds + 10)
        assert answers == [1], "the script ran to its end"
        admin.ping()  # everything queued behind the script has run
        admin.close()


class SlowAt:
    """The bot's store, with Redis made busy (by a script from another connection) just as `method` is called: the
    bot's command runs after its client gave up, so it took effect while the bot heard only a timeout."""

    def __init__(self, store: object, url: str, method: str) -> None:
        self._store = store
        self._url = url
        self._method = method
        self._busy: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method or self._busy:
            return real

        def slowed(*args: Any, **kwargs: Any) -> Any:
            slow = redis_busy(self._url, 1.5)
            slow.__enter__()
            self._busy.append(slow)
            return real(*args, **kwargs)

        return slowed

    def done(self) -> None:
        """Wait until Redis is itself again (the script has ended and everything queued behind it has run)."""
        for slow in self._busy:
            slow.__exit__(None, None, None)


def test_a_claim_that_timed_out_ran_once_and_a_retrying_client_would_have_run_it_again(
    tmp_path: Path, redis_url: str
) -> None:
    """redis_client's claim times out, runs once, and is reported as the store unavailable. The same claim through
    a client that retries runs again and finds its own first run: "already used" while nothing was done, the
    lie this policy prevents (and proof that MONITOR sees a second run)."""
    ours = RedisBackedStore(tmp_path / "ours.sqlite3", client=redis_client(redis_url, timeout_seconds=TIMEOUT))
    retrying = RedisBackedStore(
        tmp_path / "retrying.sqlite3",
        client=redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 10)),
    )
    try:
        with monitor(redis_url) as seen:
            with redis_busy(redis_url, 1.5), pytest.raises(StateUnavailable, match="Timeout"):
                ours.claim_confirmation("ours", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
            eventually(lambda: seen.count(CLAIM + "ours") or None, what="the claim to run")
            with redis_busy(redis_url, 1.5):
                claimed = retrying.claim_confirmation("again", instance_id=INSTANCE_ID, user_id=ALICE, decision="x")
            eventually(lambda: seen.count(CLAIM + "again") or None, what="the retried claim to run")
            time.sleep(0.2)
            assert seen.count(CLAIM + "ours") == 1
            assert seen.count(CLAIM + "again") >= 2
        assert claimed is False  # the retry found the first run's key: a claim that "was already used"
    finally:
        ours.close()
        retrying.close()


def test_a_click_whose_claim_timed_out_is_refused_and_claimed_once(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """Through the bot: Redis is slow when Reboot is clicked. The clicker is told the state store is unavailable
    and nothing was done; DBSS gets no reboot; the claim ran exactly once (so a second click is not a second claim
    that "was already used" by the bot itself)."""
    # The bot's store reads REDIS_URL's query options as redis-py does: a shorter timeout for the test.
    h = Harness(tmp_path, fake_dbss, fake_slack, redis_url=f"{redis_url}?socket_timeout={TIMEOUT}")
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        eventually(lambda: any(e.event == "card_posted" for e in h.bot.store.audit()), what="the card on record")
        h.bot.store.generation()  # read before Redis is made slow: the claim is what times out here
        slow = SlowAt(h.bot.service.store, redis_url, "claim_confirmation")
        h.bot.service.store = slow  # type: ignore[assignment]
        with monitor(redis_url) as seen:
            h.click("dbss_reboot_confirm", card=card)
            text = h.wait_for_hook(count=1)
            slow.done()
            eventually(lambda: seen.count(CLAIM) or None, what="the claim to run")
            time.sleep(0.3)
            assert seen.count(CLAIM) == 1
        assert "state store is unavailable" in text and "Nothing was done" in text
        h.drain()
        assert fake_dbss.reboot_requests() == []
    finally:
        h.stop()


def test_a_lock_whose_reply_was_lost_is_released_not_left_behind(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """The lock's SET NX times out but runs: the clicker is told nothing was done, no reboot is sent, and the
    lock it left is released once Redis answers again (by its correlation ID: never another's), so the next
    request is not refused as "in flight" for the lock's whole TTL."""
    h = Harness(tmp_path, fake_dbss, fake_slack, redis_url=f"{redis_url}?socket_timeout={TIMEOUT}")
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        eventually(lambda: any(e.event == "card_posted" for e in h.bot.store.audit()), what="the card on record")
        slow = SlowAt(h.bot.service.store, redis_url, "acquire_lock")
        h.bot.service.store = slow  # type: ignore[assignment]
        h.click("dbss_reboot_confirm", card=card)
        text = h.wait_for_hook(count=1)
        assert "state store is unavailable" in text and "Nothing was done" in text
        slow.done()
        eventually(lambda: h.bot.store.current_lock(INSTANCE_ID) is None, timeout=10, what="the lock released")
        h.drain()
        assert fake_dbss.reboot_requests() == []
    finally:
        h.stop()
