"""Wiring: every object of a running bot, built in one place from Settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.config import Settings
from bot.core.confirmation import ConfirmationSigner
from bot.core.contract import Store
from bot.core.fleet import Fleet
from bot.core.follow import Follower
from bot.core.outbox import Outbox
from bot.core.policy import AccessPolicy
from bot.core.reboots import RebootService
from bot.core.retention import Retention
from bot.core.stores import open_store
from bot.dbss import build_fleet
from bot.health import Readiness, ops_app
from bot.metrics import Metrics
from bot.slack import announce
from bot.slack.app import build_app
from bot.slack.delivery import Deliverer
from bot.slack.followups import SlackFollowUpNotifier
from bot.slack.groups import GroupDirectory
from bot.slack.listeners import Deps
from bot.slack.messages import Links
from bot.slack.metering import MeteredWebClient
from bot.slack.priority import AcksFirst

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

WORK_THREADS = 16


@dataclass
class Bot:
    app: App
    service: RebootService
    work: ThreadPoolExecutor
    acks_first: AcksFirst
    urgent: ThreadPoolExecutor
    reboots: ThreadPoolExecutor
    store: Store
    follower: Follower
    outbox: Outbox
    deliverer: Deliverer
    listing: Fleet
    dbss_timeout: float
    metrics: Metrics
    readiness: Readiness
    retention: Retention | None = None

    def ops(self) -> WSGIApplication:
        """/healthz, /readyz and /metrics, as a WSGI application."""
        return ops_app(self.readiness, self.metrics)

    def close(self, *, wait: bool = True) -> None:
        """Stop: finish the work in hand (in-flight DBSS calls), leave follow-ups in the store for next time.

        The deliverer stops last, so what the work in hand had to say is sent; anything Slack still refuses
        stays in the outbox for the next start (or another replica)."""
        self.follower.stop()
        if self.retention is not None:
            self.retention.stop()
        self.listing.wait_idle(timeout=self.dbss_timeout + 1)  # cards waiting for it are handed on, not dropped
        self.acks_first.close()  # held jobs go to the pool, which finishes them before it stops
        self.urgent.shutdown(wait=wait)
        self.reboots.shutdown(wait=wait)  # in-flight DBSS calls finish and are reported
        self.work.shutdown(wait=wait)
        self.deliverer.flush(timeout=5.0)
        self.deliverer.stop()
        close_dbss = getattr(self.service.dbss, "close", None)
        if callable(close_dbss):
            close_dbss()
        self.store.close()


def build(
    settings: Settings, *, dbss: Fleet | None = None, slack_client: WebClient | None = None, follow: bool = True
) -> Bot:
    """The whole bot. Tests pass fakes through the same door (`dbss`, `slack_client`)."""
    metrics = Metrics()
    store = open_store(settings)  # the console opens the same one (with REDIS_URL: the shared locks, cooldowns)
    # The readiness check's test write to Redis, with REDIS_URL.
    redis_write: Callable[[], object] | None = getattr(store, "shared_heartbeat", None)
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    # Slack's retry policy is the bot's, stated here: slack_sdk's default handler re-sends a call whose connection
    # failed, even a chat.postMessage Slack had already stored (a second card). The listeners' client retries
    # only Slack's 429, which means the call was not processed (waiting Retry-After, twice at most); a card post
    # that may have reached Slack is looked up before it is posted again. Bolt copies these handlers into its
    # per-request client.
    client = slack_client or MeteredWebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout_seconds,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
        metrics=metrics,
    )
    # The deliverer retries on its own terms (Retry-After, backoff, looking before posting again): no handlers.
    delivery_client = slack_client or MeteredWebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout_seconds,
        retry_handlers=[],
        metrics=metrics,
    )
    outbox = Outbox(store)
    groups = GroupDirectory(client, (u for u in settings.bot_allowed_users if u.startswith("S")))
    policy = AccessPolicy(
        frozenset(settings.bot_allowed_users),
        frozenset(settings.bot_allowed_channels),
        groups.members,
        settings.channel_targets,
    )
    if policy.groups:
        groups.refresh()  # once at start-up, so the first command already knows the groups
    # Every target's client, each with its own shared list call: cards and follow-ups share one when they coincide.
    fleet = dbss or build_fleet(settings, observe=metrics.dbss_call)
    service = RebootService(
        dbss=fleet,
        project_id=settings.dbss_project,
        store=store,
        policy=policy,
        signer=ConfirmationSigner.from_secrets(settings.confirmation_secrets, store.confirmation_key),
        confirm_ttl_seconds=settings.bot_confirm_ttl_seconds,
        followup_timeout_seconds=settings.bot_poll_timeout_seconds,
        cooldown_seconds=settings.bot_cooldown_seconds,
        require_second_approver=settings.bot_require_second_approver,
        outbox=outbox,
        metrics=metrics,
    )
    work = ThreadPoolExecutor(max_workers=WORK_THREADS, thread_name_prefix="dbss-work")
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    listing = fleet
    acks_first = AcksFirst(work)
    # Work a person is waiting on, a few at a time: opening a modal (trigger_id lasts 3 s), a button click.
    urgent = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dbss-urgent")
    # Confirmed reboots wait on DBSS (up to DBSS_TIMEOUT_SECONDS each): a pool of their own, so they never hold
    # the threads that open modals and answer Cancel.
    reboots = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dbss-reboot")
    deps = Deps(
        service=service,
        acks_first=acks_first,
        urgent=urgent,
        links=Links(_team_url(client)),
        listing=listing,
        outbox=outbox,
        client=client,
        reboots=reboots,
    )
    app = build_app(client=client, signing_secret=secret, deps=deps, metrics=metrics)
    follower = Follower(
        dbss=listing,
        store=store,
        notifier=SlackFollowUpNotifier(outbox),
        interval_seconds=settings.bot_poll_interval_seconds,
        outbox=outbox,
        metrics=metrics,
        # A tick's store reads and writes, and the list it parses, compete with the acks for the interpreter lock:
        # it starts in a quiet moment between requests (at most 2 s late).
        gate=partial(acks_first.wait_quiet, 2.0),
    )
    # Acks first: a round of deliveries waits for a quiet moment between requests (at most 0.5 s).
    deliverer = Deliverer(outbox, delivery_client, gate=partial(acks_first.wait_quiet, 0.5))
    metrics.watch(
        backlog=outbox.backlog,
        followups=lambda: follower.active,
        held=acks_first.oldest_held,
        due=deliverer.oldest_due,
    )
    readiness = Readiness(
        store_write=store.heartbeat,
        redis_write=redis_write,
        follower=follower if follow else None,
        # A round may take a list call (up to DBSS_TIMEOUT_SECONDS a page) and a few store writes: only a loop
        # that misses several rounds, and at least half a minute, is stuck.
        follower_stalled_after=max(3 * settings.bot_poll_interval_seconds, 30.0, 2 * settings.dbss_timeout_seconds),
        backlog=outbox.backlog,
        deliverer=deliverer,
        # Each message is at most two Slack calls, four sent at once: a deliverer that has handled none for two
        # call timeouts (and a few loops) while its round is in hand is stuck, however slow Slack is.
        deliverer_stalled_after=2 * settings.slack_timeout_seconds + 5 * deliverer.poll_seconds,
        work=acks_first,
    )
    work.submit(report_interrupted, service, outbox)
    deliverer.start()
    retention = Retention(
        store,
        audit_retention_days=settings.bot_audit_retention_days,
        # Each batch waits for a quiet moment between requests (at most 2 s), as follow-up ticks do.
        gate=partial(acks_first.wait_quiet, 2.0),
    )
    if follow:
        follower.start()
        retention.start()
    return Bot(
        app=app,
        service=service,
        work=work,
        acks_first=acks_first,
        urgent=urgent,
        reboots=reboots,
        store=store,
        follower=follower,
        outbox=outbox,
        deliverer=deliverer,
        listing=listing,
        dbss_timeout=settings.dbss_timeout_seconds,
        metrics=metrics,
        readiness=readiness,
        retention=retention if follow else None,
    )


def report_interrupted(service: RebootService, outbox: Outbox) -> None:
    """Tell each thread whose reboot outcome a crash kept from it (never retrying the reboot)."""

    try:
        service.recover(announce.interrupted)
    except Exception:
        log.exception("could not recover interrupted reboots; the next start will try again")


def _team_url(client: WebClient) -> str | None:
    try:
        return str(client.auth_test().get("url") or "") or None
    except SlackApiError as err:
        log.warning("auth.test failed; thread links are off", extra={"slack_error": err.response.get("error")})
        return None
