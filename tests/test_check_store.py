"""`python -m bot check` on the state's size (read in constant time) and on PostgreSQL; `python -m bot audit` from
PostgreSQL."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.audit import run as run_audit
from bot.config import StateSettings
from bot.core.postgres_state import PostgresStore
from bot.core.store import StateStore
from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.stores import Postgres, PostgresServer
from tests.test_demo_and_check import check, settings_for


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[Postgres]:
    db = Postgres(postgres_server)
    yield db
    postgres_server.admin(f"DROP DATABASE {db.database} WITH (FORCE)")


def record_two(store: StateStore | PostgresStore) -> None:
    store.record("reboot_intent", correlation_id="c1", user_id="UALICE", instance_id=INSTANCE_ID)
    store.record("reboot_result", correlation_id="c1", user_id="UALICE", instance_id=INSTANCE_ID, outcome="accepted")


def test_check_reports_the_size_of_the_state_file(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    settings = settings_for(tmp_path, fake_dbss, fake_slack)
    store = StateStore(settings.bot_state_path)
    record_two(store)
    store.close()
    code, report = check(settings)
    assert code == 0, report
    line = next(line for line in report.splitlines() if line.startswith("State size:"))
    assert line.startswith("State size: OK   sqlite: 2 audit entries since 20") and "0 messages waiting" in line
    assert "MB" in line and "schema 1" in line


def test_check_reports_redis_memory_and_its_eviction_policy(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """noeviction passes; a policy that evicts keys is a warning with the fix (a used confirmation could go)."""
    settings = settings_for(tmp_path, fake_dbss, fake_slack, redis_url=redis_url)
    code, report = check(settings)
    assert code == 0 and "State size: OK   redis: 0 audit entries" in report and "maxmemory-policy noeviction" in report
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory-policy", "volatile-lru")
    admin.close()
    code, report = check(settings)
    assert "State size: WARN" in report and "fix: CONFIG SET maxmemory-policy noeviction" in report


def test_check_with_postgres(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, database: Postgres) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{database.server.port}/{database.database}"
    settings = settings_for(tmp_path, fake_dbss, fake_slack, database_url=url)
    code, report = check(settings)
    assert code == 0, report
    where = f"postgresql://127.0.0.1:{database.server.port}/{database.database}"  # no user, no password
    assert f"PostgreSQL: OK   {where} answers; a test write succeeded; schema version 1" in report
    assert "State size: OK   postgresql: 0 audit entries" in report
    bad = settings_for(
        tmp_path,
        fake_dbss,
        fake_slack,
        database_url=f"postgresql://postgres:hunter2@127.0.0.1:{database.server.port}/nope",
    )
    code, report = check(bad)
    assert code == 1 and "PostgreSQL: FAIL" in report and "fix: Check DATABASE_URL" in report
    assert "hunter2" not in report


def test_audit_export_from_postgres(database: Postgres) -> None:
    store = PostgresStore(database.dsn, name="a")
    record_two(store)
    store.close()
    url = f"postgresql://postgres@127.0.0.1:{database.server.port}/{database.database}"
    out, err = io.StringIO(), io.StringIO()
    settings = StateSettings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    assert run_audit(settings, out, err, since=None, instance_id=None, fmt="jsonl") == 0, err.getvalue()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["correlation_id"]) for e in lines] == [("reboot_intent", "c1"), ("reboot_result", "c1")]
