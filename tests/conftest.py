"""Shared fixtures: the fakes, started on loopback for one test and stopped after it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

if TYPE_CHECKING:
    from tests.harness import Harness
    from tests.stores import PostgresServer

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


class RedisServer:
    """A real redis-server on loopback (.ci/run installs Debian's package), which a test may stop and start again
    on the same port."""

    def __init__(self, directory: Path) -> None:
        from tests.processes import free_port

        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: .ci/run installs it (apt-get install redis-server)"
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from tests.harness import eventually

        self._proc = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        eventually(lambda: _pings(client), timeout=10, what="redis-server")
        client.close()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A real redis-server on loopback for this test."""
    return redis_server.url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session; skipped (with the reason) where none is
    installed. CI installs Debian's package (.ci/run), so there these tests run."""
    from tests.stores import PostgresServer, postgres_available

    reason = postgres_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer()
    yield server
    server.stop()
