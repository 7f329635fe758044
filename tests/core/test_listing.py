"""Shared instance-list calls: readers that coincide share one DBSS call, and nobody waits on a thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.core.listing import SharedListing
from bot.dbss import DbssApiError, DbssClient, TokenAuth
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import Harness, eventually


def test_coinciding_readers_share_one_call(fake_dbss: FakeDbss) -> None:
    """Fifty fetches during one slow call get that call's answer; a later fetch makes a new call."""
    fake_dbss.delays["list"] = 0.3
    with DbssClient(
        base_url=fake_dbss.url, project_id=PROJECT_ID, auth=TokenAuth("good-token"), timeout_seconds=5
    ) as c:
        listing = SharedListing(c)
        futures = [listing.fetch() for _ in range(50)]
        assert len({id(f) for f in futures}) == 1
        assert {i.id for i in futures[0].result(timeout=5)} >= {INSTANCE_ID}
        assert len(fake_dbss.list_requests()) == 1
        listing.list_instances()
        assert len(fake_dbss.list_requests()) == 2 and listing.calls == 2


def test_errors_reach_every_reader_and_do_not_stick(fake_dbss: FakeDbss) -> None:
    """A failed call fails all its readers; the next fetch tries again."""
    fake_dbss.script("list", fake_dbss.gateway_error(403, "APIGW.0302", "The IAM user is not authorized"))
    with DbssClient(
        base_url=fake_dbss.url, project_id=PROJECT_ID, auth=TokenAuth("good-token"), timeout_seconds=5
    ) as c:
        listing = SharedListing(c)
        with pytest.raises(DbssApiError):
            listing.list_instances()
        assert len(listing.list_instances()) == 2


def test_callbacks_run_without_holding_a_thread(fake_dbss: FakeDbss) -> None:
    """Callbacks fire when the answer arrives; the caller's thread returned at once."""
    fake_dbss.delays["list"] = 0.2
    done = threading.Event()
    with DbssClient(
        base_url=fake_dbss.url, project_id=PROJECT_ID, auth=TokenAuth("good-token"), timeout_seconds=5
    ) as c:
        SharedListing(c).fetch().add_done_callback(lambda f: done.set())
        assert not done.is_set()
        assert done.wait(5)


def test_a_burst_of_commands_shares_list_calls(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """Twenty commands within one slow list call: every card is posted, from at most two list calls."""
    fake_dbss.delays["list"] = 0.5
    for n in range(20):
        fake_dbss.add_instance(f"{n:032x}", f"audit-{n}")
    h = Harness(tmp_path, fake_dbss, fake_slack)
    try:
        for n in range(20):
            h.command(f"{n:032x}")
        eventually(lambda: len(fake_slack.calls("chat.postMessage")) >= 20, what="twenty cards")
        assert len(fake_dbss.list_requests()) <= 2
    finally:
        h.stop()
