"""Shared fixtures: the fakes, started on loopback for one test and stopped after it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

if TYPE_CHECKING:
    from tests.harness import Harness

from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack

PROJECT_ID = "0123456789abcdef0123456789abcdef"
INSTANCE_ID = "0f3b6a5c7d8e4f9a8b7c6d5e4f3a2b1c"
OTHER_ID = "1d07f606-92d2-441c-b05c-dca47e180552"


@pytest.fixture
def fake_dbss() -> Iterator[FakeDbss]:
    fake = FakeDbss(
        project_id=PROJECT_ID,
        aksk={"AKFAKE0000000000000": "SKFAKEsecretsecretsecretsecretsecret00"},
        iam_users={("acme", "oncall-bot"): "correct horse battery staple"},
    )
    fake.add_instance(INSTANCE_ID, "audit-prod-1")
    fake.add_instance(OTHER_ID, "audit-prod-2")
    with fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def harness(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> Iterator[Harness]:
    from tests.harness import Harness

    h = Harness(tmp_path, fake_dbss, fake_slack)
    yield h
    h.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on loopback for this test (.ci/run installs Debian's package)."""
    from tests.harness import eventually
    from tests.processes import free_port

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
