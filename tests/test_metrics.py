"""/metrics: what the bot counts along the real request path, in Prometheus' text format, with labels that never
name a person, a channel or an instance."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack
from tests.harness import ALICE, BOB, INCIDENTS, MALLORY, RANDOM, Harness, eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
IDENTIFIERS = {ALICE, BOB, MALLORY, INCIDENTS, RANDOM, INSTANCE_ID, OTHER_ID, PROJECT_ID}


def scrape(h: Harness) -> tuple[Samples, set[str]]:
    """Every sample by (name, labels), and the metric families' names."""
    response = h.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(response.text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return samples, {f.name for f in families}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def fast(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> Iterator[Harness]:
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_poll_interval_seconds=0.05)
    yield h
    h.stop()


def test_metrics_count_commands_refusals_reboots_follow_ups_calls_and_acks(
    fast: Harness, fake_slack: FakeSlack
) -> None:
    """A reboot to its follow-up's end, a refused person, a click by someone else, help, and a card Slack refuses:
    each is counted once, under a label from a fixed vocabulary; no label value is an ID."""
    fake_slack.not_in_channel.add(RANDOM)
    fast.command(INSTANCE_ID)
    card = fast.wait_for_card()
    fast.click("dbss_reboot_confirm", user=BOB, card=card)  # not the requester: refused
    fast.command(INSTANCE_ID, user=MALLORY)  # not on the allow-list: refused in the ack
    fast.command("help")
    fast.command(OTHER_ID, channel=RANDOM)  # the bot is not in that channel: chat.postMessage says not_in_channel
    fast.drain()
    fast.click("dbss_reboot_confirm", card=card)
    eventually(lambda: any(e.event == "followup_done" for e in fast.bot.store.audit()), timeout=10, what="the end")
    eventually(lambda: fast.bot.outbox.backlog()[0] == 0, what="the outbox to drain")

    samples, names = scrape(fast)
    assert value(samples, "dbss_bot_commands_total", kind="reboot") == 3
    assert value(samples, "dbss_bot_commands_total", kind="help") == 1
    assert value(samples, "dbss_bot_commands_total", kind="invalid") == 0  # known series are there from the start
    assert ("dbss_bot_commands_total", frozenset({("kind", "invalid")})) in samples
    assert value(samples, "dbss_bot_refusals_total", reason="user_not_allowed") == 1
    assert value(samples, "dbss_bot_refusals_total", reason="not_requester") == 1
    refusals = sum(v for (name, _), v in samples.items() if name == "dbss_bot_refusals_total")
    assert refusals == 2
    assert value(samples, "dbss_bot_reboots_total", outcome="accepted") == 1
    assert value(samples, "dbss_bot_followups_ended_total", ending="healthy") == 1
    assert value(samples, "dbss_bot_followups_active") == 0
    assert value(samples, "dbss_bot_dbss_request_duration_seconds_count", operation="reboot", result="ok") == 1
    assert value(samples, "dbss_bot_dbss_request_duration_seconds_count", operation="list", result="ok") >= 2
    assert value(samples, "dbss_bot_slack_api_errors_total", method="chat.postMessage", error="not_in_channel") == 1
    assert value(samples, "dbss_bot_ack_duration_seconds_count", request="command") == 4
    assert value(samples, "dbss_bot_ack_duration_seconds_count", request="action") == 2
    assert 0 < value(samples, "dbss_bot_ack_duration_seconds_sum", request="command") < 4 * 3.0
    assert value(samples, "dbss_bot_outbox_pending_messages") == 0
    assert value(samples, "dbss_bot_outbox_oldest_pending_age_seconds") == 0
    assert value(samples, "process_resident_memory_bytes") > 0

    assert all(re.fullmatch(r"(dbss_bot|process|python)_[a-z_]+", name) for name in names), names
    label_values = {v for _, labels in samples for _, v in labels}
    assert not label_values & IDENTIFIERS
    assert not [v for v in label_values if re.search(r"[0-9a-f-]{32}|^[UWSCG][A-Z0-9]{2,}$", v)]


def test_a_slack_error_code_outside_slacks_vocabulary_is_counted_as_other() -> None:
    """Slack's error codes are lower-case words; anything else (an HTML page, text) would be unbounded: "other"."""
    metrics = Metrics()
    metrics.slack_error("chat.postMessage", "<html>503 Service Unavailable</html>")
    metrics.slack_error("chat.update", "ratelimited")
    assert metrics.slack_errors.labels("chat.postMessage", "other")._value.get() == 1
    assert metrics.slack_errors.labels("chat.update", "ratelimited")._value.get() == 1


def test_each_bot_has_a_registry_of_its_own(harness: Harness, tmp_path: Path) -> None:
    """Two bots in one process (the tests build many) count apart: one's command is not in the other's metrics."""
    harness.command("help")
    other = Harness(tmp_path / "other", harness.dbss, harness.slack)
    try:
        assert value(scrape(harness)[0], "dbss_bot_commands_total", kind="help") == 1
        assert value(scrape(other)[0], "dbss_bot_commands_total", kind="help") == 0
    finally:
        other.stop()
