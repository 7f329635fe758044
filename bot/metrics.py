"""The bot's Prometheus metrics, in a registry of its own (one per built bot), served at /metrics.

Every label has a small, fixed vocabulary: no user, channel or instance ID is ever a label value, and no text a
person typed. Names follow Prometheus' naming guide: a `dbss_bot_` prefix, base units, `_total` on counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

CommandKind = Literal["reboot", "picker", "help", "status", "list", "history", "invalid"]
RefusalReason = Literal[
    "user_not_allowed",
    "channel_not_allowed",
    "region_not_allowed",
    "invalid_command",
    "in_flight",
    "cooldown",
    "unknown_instance",
    "not_rebootable",
    "invalid_token",
    "wrong_channel",
    "not_requester",
    "needs_second_approver",
    "requester_not_allowed",
    "already_used",
    "expired",
    "state_unavailable",
    "state_reset",
]
COMMAND_KINDS: tuple[CommandKind, ...] = ("reboot", "picker", "help", "status", "list", "history", "invalid")
REFUSAL_REASONS: tuple[RefusalReason, ...] = RefusalReason.__args__  # type: ignore[attr-defined]
REBOOT_OUTCOMES = ("accepted", "rejected", "not_sent", "unknown")
FOLLOWUP_ENDINGS = ("healthy", "unhealthy", "timeout", "gone")
REQUEST_KINDS = ("command", "action", "shortcut", "view", "other")
# Slack's error codes are a fixed vocabulary of lower-case words; anything else (an HTML error page, say) is "other".
SLACK_ERROR = re.compile(r"[a-z0-9_]{1,48}")
SLACK_METHOD = re.compile(r"[a-zA-Z.]{1,48}")

# Acks take milliseconds; Slack gives up after 3 s.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
# A list call answers in tens of milliseconds to seconds; DBSS_TIMEOUT_SECONDS is at most 120.
DBSS_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class Metrics:
    """The bot's metrics. Each hook is one call at a decision point that already exists."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU, open files of this process
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.commands = Counter(
            "dbss_bot_commands", "Slash commands received, by what they ask for.", ["kind"], registry=r
        )
        self.refusals = Counter(
            "dbss_bot_refusals", "Requests and clicks refused, by reason (nothing was done).", ["reason"], registry=r
        )
        self.reboots = Counter("dbss_bot_reboots", "Reboot calls to DBSS, by outcome.", ["outcome"], registry=r)
        self.followups_active = Gauge(
            "dbss_bot_followups_active", "Reboots this replica is following, as of its last poll round.", registry=r
        )
        self.followups_ended = Counter(
            "dbss_bot_followups_ended", "Follow-ups ended, by how the instance ended up.", ["ending"], registry=r
        )
        self.dbss_duration = Histogram(
            "dbss_bot_dbss_request_duration_seconds",
            "DBSS, IAM and metadata-service calls, by operation and result.",
            ["operation", "result"],
            buckets=DBSS_BUCKETS,
            registry=r,
        )
        self.slack_errors = Counter(
            "dbss_bot_slack_api_errors",
            "Slack Web API calls that failed, by method and Slack's error code.",
            ["method", "error"],
            registry=r,
        )
        self.ack_duration = Histogram(
            "dbss_bot_ack_duration_seconds",
            "Time from a Slack request entering the bot's listeners to its acknowledgement, by kind of request.",
            ["request"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "dbss_bot_outbox_pending_messages",
            "Messages written for people and not yet delivered to Slack.",
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "dbss_bot_outbox_oldest_pending_age_seconds",
            "How long the oldest undelivered message has waited (0 when none waits).",
            registry=r,
        )
        self.held_oldest = Gauge(
            "dbss_bot_held_job_oldest_age_seconds",
            "How long the oldest job held back while requests are acknowledged has waited (0 when none; released "
            "within 2 s when the bot is well).",
            registry=r,
        )
        self.outbox_oldest_due = Gauge(
            "dbss_bot_outbox_oldest_due_age_seconds",
            "How long the oldest message of the delivery round in hand has been due without being handled (0 when "
            "none).",
            registry=r,
        )
        for kind in COMMAND_KINDS:  # known series start at 0, so rate() sees their first increment
            self.commands.labels(kind)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        for outcome in REBOOT_OUTCOMES:
            self.reboots.labels(outcome)
        for ending in FOLLOWUP_ENDINGS:
            self.followups_ended.labels(ending)

    # --- hooks ---------------------------------------------------------------------------------------------

    def refused(self, reason: RefusalReason) -> None:
        self.refusals.labels(reason).inc()

    def reboot(self, outcome: str) -> None:
        self.reboots.labels(outcome if outcome in REBOOT_OUTCOMES else "unknown").inc()

    def followup_ended(self, ending: str) -> None:
        self.followups_ended.labels(ending).inc()

    def dbss_call(self, operation: str, result: str, seconds: float) -> None:
        self.dbss_duration.labels(operation, result).observe(seconds)

    def slack_error(self, method: str, error: str) -> None:
        self.slack_errors.labels(
            method if SLACK_METHOD.fullmatch(method) else "other", error if SLACK_ERROR.fullmatch(error) else "other"
        ).inc()

    def watch(
        self,
        *,
        backlog: Callable[[], tuple[int, float]],
        followups: Callable[[], int],
        held: Callable[[], float] = lambda: 0.0,
        due: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Gauges read when scraped: the outbox's backlog, the follow-ups in hand, the oldest held job and the
        oldest due message."""
        self.outbox_pending.set_function(lambda: backlog()[0])
        self.outbox_oldest.set_function(lambda: backlog()[1])
        self.followups_active.set_function(followups)
        self.held_oldest.set_function(held)
        self.outbox_oldest_due.set_function(due)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the text format the scraper asked for (Prometheus text, or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
