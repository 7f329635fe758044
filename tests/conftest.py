"""Shared fixtures: the fakes, started on loopback for one test and stopped after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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
