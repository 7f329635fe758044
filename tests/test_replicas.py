"""Two replicas sharing state in a real redis-server: never a double reboot, never a dropped follow-up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis

from bot.core.redis_state import RedisBackedStore
from bot.core.store import FollowUp
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.harness import ALICE, BOB, INCIDENTS, SIGNING_SECRET, Harness, button_value, eventually, sign

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on loopback for this test (.ci/run installs Debian's package)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: .ci/run installs it (apt-get install redis-server)"
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    eventually(lambda: _pings(client), timeout=10, what="redis-server")
    client.close()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_confirmation_lock_and_cooldown_are_shared(tmp_path: Path, redis_url: str) -> None:
    """A confirmation used on one replica is used on the other; a lock taken on one is seen by the other."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url)
    try:
        assert a.confirmation_key() == b.confirmation_key()
        assert a.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        assert not b.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        taken, _ = a.acquire_lock(
            INSTANCE_ID, owner=ALICE, channel=INCIDENTS, thread_ts="1.1", correlation_id="c1", ttl_seconds=60
        )
        assert taken
        refused, held = b.acquire_lock(
            INSTANCE_ID, owner=BOB, channel=INCIDENTS, thread_ts="1.2", correlation_id="c2", ttl_seconds=60
        )
        assert not refused and held.owner == ALICE
        b.release_lock(INSTANCE_ID, "c2")  # not the holder: nothing happens
        assert a.current_lock(INSTANCE_ID) is not None
        a.release_lock(INSTANCE_ID, "c1")
        assert b.current_lock(INSTANCE_ID) is None
        a.record("reboot_result", correlation_id="c1", user_id=ALICE, instance_id=INSTANCE_ID, outcome="accepted")
        last = b.last_reboot(INSTANCE_ID)
        assert last is not None and last.user_id == ALICE and last.outcome == "accepted"
        assert b.audit() == [], "the audit trail stays with the replica that wrote it"
    finally:
        a.close()
        b.close()


def test_a_dead_replicas_follow_up_is_taken_over(tmp_path: Path, redis_url: str) -> None:
    """A follow-up owned by a replica that stops renewing its lease passes to another; the ending is reported once."""
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url, lease_seconds=0.5)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url, lease_seconds=0.5)
    try:
        now = time.time()
        a.add_followup(FollowUp("c1", INSTANCE_ID, ALICE, ALICE, INCIDENTS, "1.1", now, now + 600))
        assert [f.correlation_id for f in a.active_followups()] == ["c1"]
        assert b.active_followups() == [], "owned by a while its lease is fresh"
        time.sleep(0.7)  # a stops ticking (dies): its lease lapses
        [taken] = b.active_followups()
        assert taken.correlation_id == "c1"
        assert a.active_followups() == [], "b holds it now"
        assert b.finish_followup("c1", "healthy") and not a.finish_followup("c1", "healthy")
        assert a.followup_outcome("c1") == "healthy"
    finally:
        a.close()
        b.close()


def test_whole_flow_with_redis(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str) -> None:
    """Card, confirmation, reboot and follow-up to ACTIVE, with the shared state in Redis."""
    h = Harness(tmp_path, fake_dbss, fake_slack, redis_url=redis_url, bot_poll_interval_seconds=0.05)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        h.click("dbss_reboot_confirm", card=card)
        eventually(
            lambda: any("back to *ACTIVE*" in m.text for m in fake_slack.thread(card.channel, card.ts)),
            what="the follow-up to end",
        )
        assert len(fake_dbss.reboot_requests()) == 1
    finally:
        h.stop()


class Replica:
    def __init__(self, env: dict[str, str], tmp_path: Path, name: str) -> None:
        self.port = free_port()
        env = {**env, "PORT": str(self.port), "BOT_STATE_PATH": str(tmp_path / f"{name}.sqlite3")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "http"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        eventually(self.up, timeout=30, what=f"replica {name}")

    def up(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def post(self, body: str) -> int:
        return self.http.post(
            "/slack/events", content=body, headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        ).status_code

    def worker_pid(self) -> int:
        return int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def test_two_processes_same_click_one_reboot_and_follow_up_survives(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """Two bot processes behind one 'load balancer': the same click delivered to both reboots once; the
    replica following the reboot is killed, and the other one finishes the thread."""
    fake_dbss.reboot_polls = 40
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DBSS_PROJECT_ID": PROJECT_ID,
        "DBSS_ENDPOINT": fake_dbss.url,
        "DBSS_AUTH_TOKEN": "good-token",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "BOT_ALLOWED_USERS": ALICE,
        "REDIS_URL": redis_url,
        "BOT_POLL_INTERVAL_SECONDS": "0.3",
        "LOG_FORMAT": "json",
    }
    a, b = Replica(env, tmp_path, "a"), Replica(env, tmp_path, "b")
    try:
        body = urlencode(
            {
                "command": "/dbss-reboot",
                "text": INSTANCE_ID,
                "user_id": ALICE,
                "channel_id": INCIDENTS,
                "team_id": "T1",
                "response_url": f"{fake_slack.url}/hooks/1",
            }
        )
        assert a.post(body) == 200
        eventually(lambda: fake_slack.messages, timeout=10, what="the card")
        card = next(iter(fake_slack.messages.values()))
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": ALICE},
            "team": {"id": "T1"},
            "channel": {"id": INCIDENTS},
            "container": {"type": "message", "message_ts": card.ts, "channel_id": INCIDENTS},
            "message": {"ts": card.ts, "blocks": card.blocks},
            "response_url": f"{fake_slack.url}/hooks/2",
            "actions": [{"action_id": "dbss_reboot_confirm", "value": button_value(card, "dbss_reboot_confirm")}],
        }
        click = urlencode({"payload": json.dumps(payload)})
        results: list[int] = []
        threads = [threading.Thread(target=lambda r=r: results.append(r.post(click))) for r in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200, 200]
        eventually(lambda: any("DBSS accepted" in m.text for m in fake_slack.thread(INCIDENTS, card.ts)), timeout=10)
        eventually(lambda: any("already answered" in t for t in fake_slack.hook_texts()), timeout=10)
        time.sleep(0.5)
        assert fake_dbss.reboots_done == [INSTANCE_ID], "one click, two replicas, one reboot"

        # Kill the replica that owns the follow-up; the other takes it over once the lease lapses.
        client = redis.Redis.from_url(redis_url)
        owner_key = next(iter(client.scan_iter("dbss-bot:followup-owner:*")))
        owner = client.get(owner_key).decode()  # type: ignore[union-attr]
        client.close()
        victim, survivor = (a, b) if f":{a.worker_pid()}:" in owner else (b, a)
        victim.kill()
        done = eventually(
            lambda: [m for m in fake_slack.thread(INCIDENTS, card.ts) if "back to *ACTIVE*" in m.text],
            timeout=30,
            what="the surviving replica to finish the follow-up",
        )
        assert len(done) == 1 and survivor.proc.poll() is None
        assert fake_dbss.reboots_done == [INSTANCE_ID]
    finally:
        a.stop()
        b.stop()
