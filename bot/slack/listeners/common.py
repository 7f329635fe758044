"""What every surface shares: the collaborators (one small object), running work off the acknowledging path,
private answers, and posting a confirmation card."""

from __future__ import annotations

import logging
import re
import time
import urllib.error
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from http.client import HTTPException
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.core.fleet import Fleet, InstanceList, NoRegionReadable
from bot.core.outbox import Outbox
from bot.core.policy import AccessPolicy
from bot.core.reboots import Offer, RebootService
from bot.dbss.errors import DbssApiError, DbssError
from bot.dbss.models import Instance
from bot.slack import announce, delivery, messages
from bot.slack.messages import Links
from bot.slack.priority import AcksFirst

log = logging.getLogger(__name__)

TS = re.compile(r"\d{1,12}\.\d{1,9}")
# Errors of chat.postMessage that mean "the bot cannot post here" rather than "something broke".
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action"})
CARD_ATTEMPTS = 2  # the second only once the first is known not to be there
SLACK_BUSY = frozenset({"ratelimited", "rate_limited", "service_unavailable", "fatal_error", "internal_error"})


def say_privately(respond: Respond, text: str = "", **kwargs: Any) -> bool:
    """An ephemeral message through response_url, which works even where the bot is not a member.

    False when it could not be delivered (no response_url in the payload, or Slack refused it)."""
    if not respond.response_url:
        log.warning("no response_url to answer on; the private answer was dropped")
        return False
    # Sent with a client of our own rather than through respond(): Bolt's has slack_sdk's default handler, which
    # posts again when the connection fails, even after Slack has shown the message. One attempt here.
    hook = WebhookClient(respond.response_url, proxy=respond.proxy, ssl=respond.ssl, retry_handlers=[])
    response = hook.send(text=text, response_type="ephemeral", replace_original=False, **kwargs)
    if response.status_code != 200:
        log.warning("response_url answered HTTP %s", response.status_code)
        return False
    return True


def privately(respond: Respond) -> Callable[[str], bool]:
    return partial(say_privately, respond)


def dbss_unavailable(err: DbssError) -> str:
    if isinstance(err, NoRegionReadable):
        return (
            f":warning: No region's instance list could be read right now ("
            f"{messages.escape('; '.join(f'{label}: {type(e).__name__}' for label, e in err.unreadable.items()))})."
            " Try again shortly."
        )
    if isinstance(err, DbssApiError):
        return (
            f":warning: DBSS refused the instance list: {messages.code(err.error_code or 'no code')} "
            f"{messages.escape(err.error_msg)} (HTTP {err.status_code}, request ID "
            f"{messages.code(err.request_id or 'none')})."
        )
    return f":warning: DBSS could not be reached ({messages.escape(type(err).__name__)}). Try again shortly."


def run_reporting(correlation_id: str, tell: Callable[[str], object], job: Callable[[], object]) -> None:
    """Run `job`; an unexpected error is logged with its traceback and the person is told, with a reference."""
    try:
        job()
    except Exception:
        log.exception("unexpected error", extra={"correlation_id": correlation_id})
        try:
            tell(
                f":boom: Something went wrong on the bot's side (ref `{correlation_id}`). Check the card's "
                "thread and the audit trail before trying again; the platform team has the details in the logs.",
            )
        except Exception:
            log.exception("could not tell the person about the error", extra={"correlation_id": correlation_id})


@dataclass(frozen=True)
class Deps:
    """The collaborators every listener module gets.

    Slow work goes through `acks_first`, which holds it while requests are being acknowledged, then runs it on
    the work pool. Work that must start at once (opening a modal before its trigger_id expires, acting on a
    button click) goes to `urgent`, a small pool of its own, so it waits neither for acks nor behind a storm's
    cards. `outbox` holds every message a person must see until it is delivered.
    """

    service: RebootService
    acks_first: AcksFirst
    urgent: Executor
    links: Links
    listing: Fleet
    outbox: Outbox
    client: WebClient
    reboots: Executor  # confirmed reboots' DBSS calls: never on `urgent`, whose threads must stay free

    @property
    def policy(self) -> AccessPolicy:
        return self.service.policy

    def in_background(
        self, correlation_id: str, tell: Callable[[str], object], job: Callable[[], object], *, now: bool = False
    ) -> None:
        """Run slow work off the acknowledging path; an unexpected error is logged and told to the person.

        In a storm a thousand jobs wait in `acks_first` at once, and every object they hold is work for the
        garbage collector while acks are being served: callers pass `partial`s of plain values, not closures
        over the request. `now`: a person is waiting on this very job (a click), so it goes to `urgent`.
        Once shutdown has begun neither takes new work; the job then runs here, at once, so nothing a person
        asked for is dropped silently."""
        reporting = partial(run_reporting, correlation_id, tell, job)
        try:
            if now:
                self.urgent.submit(reporting)
            else:
                self.acks_first.submit(reporting)
        except RuntimeError:
            log.warning("shutting down: running the job in place", extra={"correlation_id": correlation_id})
            reporting()

    def post_card(
        self,
        *,
        user: str,
        channel: str,
        instance_id: str,
        correlation_id: str,
        tell: Callable[[str], object],
        thread_ts: str | None = None,
        reason: str | None = None,
        known: list[Instance] | None = None,
        pending: Future[list[Instance]] | None = None,
    ) -> None:
        """On the work pool: the quick checks, then the card once the shared instance list has arrived.

        `tell` answers the person privately; `thread_ts` puts the card in a thread (an alert's); `known` is an
        instance list the caller has just read; `pending` is the list call the command started as it was
        acknowledged, so a card never waits for a second one."""
        refusal = self.service.check_request(
            user=user, channel=channel, instance_id=instance_id, correlation_id=correlation_id
        )
        if refusal is not None:
            tell(messages.offer_refusal(refusal, self.links))
            return
        post = partial(
            self._offer,
            user=user,
            channel=channel,
            instance_id=instance_id,
            correlation_id=correlation_id,
            tell=tell,
            thread_ts=thread_ts,
            reason=reason,
        )
        if known is not None:
            post(known)
            return
        self.with_listing(pending or self.listing.fetch(), correlation_id, tell, post)

    def reachable(self, instances: list[Instance], channel: str) -> list[Instance]:
        """The instances this channel may reboot (BOT_CHANNEL_TARGETS), for menus; the list's notes are kept."""
        regions = self.service.policy.regions_here(channel)
        if regions is None:
            return instances
        kept = [i for i in instances if (i.target or "").partition(":")[0] in regions]
        if isinstance(instances, InstanceList):
            return InstanceList(kept, instances.unreadable, instances.regions)
        return kept

    def with_listing(
        self,
        future: Future[list[Instance]],
        correlation_id: str,
        tell: Callable[[str], object],
        job: Callable[[list[Instance] | DbssError], None],
    ) -> None:
        """Run `job` with the instance list (or the error reading it gave) once it is here.

        No thread waits for DBSS: the answer comes back as a callback, and the job runs on the pool."""
        if future.done():
            job(_answer(future))
            return
        future.add_done_callback(partial(self._listing_arrived, correlation_id, tell, job))

    def _listing_arrived(
        self,
        correlation_id: str,
        tell: Callable[[str], object],
        post: Callable[[list[Instance] | DbssError], None],
        future: Future[list[Instance]],
    ) -> None:
        self.in_background(correlation_id, tell, partial(_post_answer, post, future))

    def _offer(
        self,
        answer: list[Instance] | DbssError,
        *,
        user: str,
        channel: str,
        instance_id: str,
        correlation_id: str,
        tell: Callable[[str], object],
        thread_ts: str | None,
        reason: str | None,
    ) -> None:
        result = self.service.make_offer(
            user=user,
            channel=channel,
            instance_id=instance_id,
            correlation_id=correlation_id,
            listing=answer,
            reason=reason,
        )
        if isinstance(result, Offer):
            self._post_offer(result, tell=tell, thread_ts=thread_ts)
        else:
            tell(messages.offer_refusal(result, self.links))

    def _post_offer(self, offer: Offer, *, tell: Callable[[str], object], thread_ts: str | None) -> None:
        """Post the card, never twice: a post that may have reached Slack (a timeout, a dropped connection, a 5xx)
        is looked for by the key in its metadata, and posted again only when it is provably not there."""
        c = offer.confirmation
        key = f"{c.nonce}:card"
        written = time.time()
        error = "no answer"
        for _ in range(CARD_ATTEMPTS):
            try:
                posted = self.client.chat_postMessage(
                    channel=c.channel,
                    thread_ts=thread_ts,
                    text=messages.card_text(offer),
                    blocks=messages.card(offer, second_approver=self.service.require_second_approver),
                    metadata={"event_type": delivery.METADATA_EVENT, "event_payload": {"key": key}},
                )
            except SlackApiError as err:
                error = str(err.response.get("error", "unknown_error"))
                if err.response.status_code < 500:  # Slack answered: the card was not posted
                    if error not in CANNOT_POST and error not in SLACK_BUSY:
                        raise
                    self._card_failed(offer, error, tell)
                    return
            except (urllib.error.URLError, OSError, HTTPException) as err:
                error = type(err).__name__
            else:
                self.service.card_posted(offer, thread_ts=str(posted["ts"]))
                return
            try:  # it may be there: look before anything else
                found = delivery.find_posted(
                    self.client, channel=c.channel, thread_ts=thread_ts, key=key, since=written
                )
            except delivery.LookupUnsure as err:
                log.warning("a card post may or may not have reached Slack", extra={"correlation_id": c.nonce})
                self._card_failed(offer, f"{error}; then {err}", tell, outcome="unknown")
                return
            if found is not None:
                log.info("a card post that failed had reached Slack", extra={"correlation_id": c.nonce})
                self.service.card_posted(offer, thread_ts=found)
                return
        self._card_failed(offer, error, tell)

    def _card_failed(
        self, offer: Offer, error: str, tell: Callable[[str], object], *, outcome: str = "not_posted"
    ) -> None:
        c = offer.confirmation
        self.service.store.record(
            "card_failed",
            correlation_id=c.nonce,
            user_id=c.requester,
            instance_id=c.instance_id,
            channel=c.channel,
            outcome=outcome,
            detail=error,
        )
        if outcome == "unknown":
            tell(messages.card_maybe_posted(error))
        elif error in CANNOT_POST:
            tell(messages.cannot_post_here(error))
        else:
            tell(messages.slack_busy(error))

    def refused(self, *, user: str, channel: str, reason: str, text: str, correlation_id: str) -> None:
        """Record a refusal in the audit trail (every surface's refusals are on record)."""
        self.service.refuse_request(user=user, channel=channel, reason=reason, text=text, correlation_id=correlation_id)

    def run_reboot(self, job: Callable[[], object]) -> None:
        """A confirmed reboot's DBSS call, on its own pool (inline once shutdown has begun)."""
        try:
            self.reboots.submit(job)
        except RuntimeError:
            job()

    def reply(self, key: str, *, respond: Respond, to: str, text: str) -> None:
        """A private answer to a click, through the outbox: delivered even if the response_url fails."""
        self.outbox.put([announce.private(key, response_url=respond.response_url, recipient=to, text=text)])


def _post_answer(post: Callable[[list[Instance] | DbssError], None], future: Future[list[Instance]]) -> None:
    post(_answer(future))


def _answer(future: Future[list[Instance]]) -> list[Instance] | DbssError:
    try:
        return future.result()
    except DbssError as err:
        return err


def state_value(values: dict[str, Any], block: str, field: str) -> str:
    """One input's value from a view's `state.values` (the block and its action share one ID): "" if absent."""
    element = (values.get(block) or {}).get(block) if isinstance(values.get(block), dict) else None
    if not isinstance(element, dict):
        return ""
    value = element.get(field)
    if field == "selected_option":
        value = value.get("value") if isinstance(value, dict) else None
    return str(value or "") if isinstance(value, str | int) else ""
