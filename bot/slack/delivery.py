"""The one deliverer of the outbox: in order within each thread, retrying what Slack did not take, never twice.

- Slack's 429 carries Retry-After: the message waits that long. Connection errors, timeouts and 5xx are retried
  with backoff, for as long as it takes (Slack down for an hour: everything arrives, in order, when it is back).
- A post that may have reached Slack (a timeout, a connection dropped after sending, a 5xx) is looked up in its
  thread by the key it carries in its metadata before it is posted again.
- An answer Slack refuses for good (the bot was removed from the channel, the channel was archived) goes to the
  requester as a direct message instead, and the audit trail says how each outcome reached a person.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from http.client import HTTPException
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.core.outbox import Outbox, OutboxMessage
from bot.slack import messages

log = logging.getLogger(__name__)

METADATA_EVENT = "dbss_reboot_message"
MAX_BACKOFF_SECONDS = 60.0
ROUND_MESSAGES = 50  # sent in one round, in batches of `threads`, before the loop yields to acks again
LOOKUP_SKEW_SECONDS = 600.0
MAY_HAVE_ARRIVED = "it may have arrived, and may not have reached you"
LOOKUP_PAGES = 50  # of 200 messages: a thread (or channel) that busy since the message was written is not plausible
NEWEST_UPDATES_KEPT = 1_000  # messages whose newest update is remembered (those of the cards in flight)
# Errors that say "try again": Slack's own trouble, or a credential the operators are fixing.
TRANSIENT = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "team_access_not_granted",
    }
)


class _Retry(Exception):
    def __init__(self, detail: str, *, after: float | None = None, uncertain: bool = False) -> None:
        super().__init__(detail)
        self.after = after
        self.uncertain = uncertain


class _Undeliverable(Exception):
    pass


class Deliverer:
    """Sends what the outbox holds. Several threads, but one message of a group (a thread) at a time."""

    def __init__(
        self,
        outbox: Outbox,
        client: WebClient,
        *,
        threads: int = 4,
        poll_seconds: float = 1.0,
        webhook: Callable[[str], WebhookClient] | None = None,
        gate: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dbss-deliver")
        self._threads = threads
        self.poll_seconds = poll_seconds
        # No retry handlers: the deliverer retries a response_url on its own terms (_respond), never slack_sdk's
        # default handler, which posts again after a failed connection that Slack may already have shown.
        self._webhook = webhook or partial(WebhookClient, retry_handlers=[])
        self._gate = gate  # waits (briefly) for a quiet moment between acks before each round
        self._clock = clock
        self._stop = threading.Event()
        self._round = threading.Lock()  # rounds never overlap: one message is never sent by two of them
        self._newest_lock = threading.Lock()
        # By message ts: when the newest state sent was written. Bounded: the messages updated least recently are
        # forgotten first (the outbox folds a message's pending updates into one, so an older state cannot follow).
        self._newest_update: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self.rounds = 0
        # When the deliverer last moved (a loop came round, a message was handled; monotonic): a liveness check
        # tells a stuck deliverer by it. A round may be long while it works through its messages, never silent.
        self.progress_at = time.monotonic()
        self._due_lock = threading.Lock()
        self._due_since: dict[str, float] = {}  # this round's messages not handled yet: when each became due

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dbss-deliverer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the round in hand; what is left stays in the store for the next start (or another replica)."""
        self._stop.set()
        self.outbox.wake()  # a loop asleep between polls sees _stop at once
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outbox.begin_round()
            if self._gate is not None:
                self._gate()
            try:
                sent = self.deliver_round()
            except Exception:
                log.exception("outbox delivery round failed; trying again")
                sent = 0
            self.progress_at = time.monotonic()
            if not sent and not self._stop.is_set():  # checked after begin_round: stop's wake is never missed
                self.outbox.wait(self.poll_seconds)

    def deliver_round(self) -> int:
        """Catch up on store writes, then send what is due: the next message of each group, in batches, up to
        ROUND_MESSAGES in all.

        A batch is no more than are sent at once: with replicas, each message is leased to this one for a few
        Slack timeouts only when its batch is taken, so a lease never lapses while its message waits behind
        others (and another replica never sends it too). The batches follow each other without waiting for a
        quiet moment between acks (the loop waits once a round), so delivery keeps up with a storm."""
        with self._round:
            self.rounds += 1
            sent = 0
            while sent < ROUND_MESSAGES and not self._stop.is_set():
                due = self.outbox.due(limit=self._threads)  # from memory first while the store fails
                with self._due_lock:
                    self._due_since = {m.key: max(m.created_at, m.not_before) for m in due}
                self.progress_at = time.monotonic()
                if not due:
                    break
                wait([self._pool.submit(self._deliver, m) for m in due])
                sent += len(due)
            self.outbox.catch_up()
            return sent

    def flush(self, timeout: float) -> None:
        """At shutdown: deliver what is due and land what the store has not taken yet, for at most `timeout`
        seconds. What the store still has not taken then is lost with this process: each item is logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                sent = self.deliver_round()
            except Exception:
                log.exception("outbox delivery round failed at shutdown")
                sent = 0
            memory, deferred = self.outbox.leftovers()
            if not sent and not memory and not deferred:
                return
            if not sent:
                time.sleep(0.2)
        memory, deferred = self.outbox.leftovers()
        for m in memory:
            log.error(
                "stopping with a message the state store never took: it is lost",
                extra={"correlation_id": m.correlation_id, "key": m.key, "channel": m.channel, "text": m.text[:300]},
            )
        for what in deferred:
            log.error("stopping with a state store write that never landed: %s", what)

    # --- one message -------------------------------------------------------------------------------------

    def oldest_due(self) -> float:
        """Seconds the oldest message of the round in hand has been due without being handled (0 when none)."""
        with self._due_lock:
            since = min(self._due_since.values(), default=None)
        return max(0.0, self._clock() - since) if since is not None else 0.0

    def _deliver(self, m: OutboxMessage) -> None:
        try:
            self._handle(m)
        finally:
            self.outbox.release(m)
            with self._due_lock:
                self._due_since.pop(m.key, None)
            self.progress_at = time.monotonic()

    def _handle(self, m: OutboxMessage) -> None:
        try:
            ts = self._send(m)
        except _Retry as retry:
            delay = retry.after if retry.after is not None else _backoff(m.attempts)
            log.warning(
                "message not delivered yet; will retry",
                extra={"correlation_id": m.correlation_id, "key": m.key, "detail": str(retry), "retry_in": delay},
            )
            self.outbox.retry(
                m, not_before=self._clock() + delay, uncertain=m.uncertain or retry.uncertain, detail=str(retry)
            )
            return
        except _Undeliverable as err:
            self._undeliverable(m, str(err))
            return
        except Exception as err:  # a bug of ours: keep the message, try again later, and say so in the log
            log.exception("unexpected error delivering a message", extra={"key": m.key})
            self.outbox.retry(m, not_before=self._clock() + _backoff(m.attempts), uncertain=True, detail=repr(err))
            return
        if self.outbox.done(m, state="sent", ts=ts) and m.must_see:
            how = "privately (direct message)" if m.key.endswith(":dm") else "thread"
            if m.kind == "respond":
                how = "privately (response_url)"
            self.outbox.record("outcome_reported", correlation_id=m.correlation_id, outcome=m.key, detail=how)

    def _undeliverable(self, m: OutboxMessage, error: str) -> None:
        log.error(
            "Slack refused a message for good", extra={"correlation_id": m.correlation_id, "key": m.key, "error": error}
        )
        self.outbox.done(m, state="failed", detail=error)
        if not m.must_see:
            return
        if m.recipient and not m.key.endswith(":dm"):
            where = f"<#{m.channel}>" if m.kind != "respond" else "the channel"
            self.outbox.put(
                [
                    OutboxMessage(
                        key=f"{m.key}:dm",
                        kind="post",
                        channel=m.recipient,
                        correlation_id=m.correlation_id,
                        text=f"I could not post this in {where} ({messages.code(error)}), so I am telling you "
                        f"directly:\n{m.text}",
                        must_see=True,
                    )
                ]
            )
            return
        self.outbox.record(
            "outcome_reported", correlation_id=m.correlation_id, outcome=m.key, detail=f"undeliverable: {error}"
        )

    def _send(self, m: OutboxMessage) -> str | None:
        match m.kind:
            case "anchor":
                return m.ts
            case "post":
                return self._post(m)
            case "update":
                return self._update(m)
            case "respond":
                self._respond(m)
                return None
        raise _Undeliverable(f"unknown kind {m.kind}")

    def _post(self, m: OutboxMessage) -> str:
        if m.uncertain:
            found = self._already_posted(m)
            if found is not None:
                log.info("a post that timed out had reached Slack; not posting it again", extra={"key": m.key})
                return found
        response = self._call(
            m,
            "chat_postMessage",
            channel=m.channel,
            thread_ts=m.thread_ts,
            text=m.text,
            blocks=m.blocks,
            reply_broadcast=m.broadcast or None,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": m.key}},
            unfurl_links=False,
        )
        return str(response["ts"])

    def _update(self, m: OutboxMessage) -> str | None:
        ts, blocks = m.ts, m.blocks
        if ts is None and m.target:
            try:
                target = self.outbox.get(m.target)
            except Exception as err:  # cannot tell: not the same as "never posted"
                raise _Retry(f"cannot read the message to update ({type(err).__name__})") from err
            if target is None or target.state == "failed":
                raise _Undeliverable(f"the message to update ({m.target}) was never posted")
            if target.ts is None:
                raise _Retry(f"the message to update ({m.target}) is not posted yet")
            ts = target.ts
            if blocks is None and target.kind == "anchor":  # the card: its content, then the line
                blocks = messages.resolved_card(target.blocks or [], m.text)
        if ts is None:
            raise _Undeliverable("nothing to update")
        with self._newest_lock:
            if m.created_at < self._newest_update.get(ts, 0.0):  # a newer state already went out: never go back
                return ts
        self._call(m, "chat_update", channel=m.channel, ts=ts, text=m.text, blocks=blocks or [])
        with self._newest_lock:
            newest = max(self._newest_update.pop(ts, 0.0), m.created_at)
            self._newest_update[ts] = newest  # last in the dict's order: the most recently updated
            while len(self._newest_update) > NEWEST_UPDATES_KEPT:
                del self._newest_update[next(iter(self._newest_update))]
        return ts

    def _respond(self, m: OutboxMessage) -> None:
        if not m.target:
            raise _Undeliverable("no response_url")
        try:
            response = self._webhook(m.target).send(
                text=m.text, blocks=m.blocks, response_type="ephemeral", replace_original=False
            )
        except (urllib.error.URLError, OSError, HTTPException) as err:
            if _never_sent(err):
                raise _Retry(f"response_url: {type(err).__name__}") from err
            # It may have arrived, and an ephemeral answer cannot be looked up: not sent there again (a second
            # copy), but to the person directly.
            raise _Undeliverable(f"response_url: {type(err).__name__}; {MAY_HAVE_ARRIVED}") from err
        if response.status_code == 429:  # not taken: waiting Retry-After and sending again is safe
            raise _Retry(f"response_url answered HTTP {response.status_code}", after=_retry_after(response.headers))
        if response.status_code >= 500:
            raise _Undeliverable(f"response_url answered HTTP {response.status_code}; {MAY_HAVE_ARRIVED}")
        if response.status_code != 200:  # expired (30 min) or used up (5 answers): tell them directly instead
            raise _Undeliverable(f"response_url answered HTTP {response.status_code} {response.body[:100]}")

    def _already_posted(self, m: OutboxMessage) -> str | None:
        """The ts of the message carrying this key, if an earlier attempt did post it."""
        try:
            return find_posted(self._client, channel=m.channel, thread_ts=m.thread_ts, key=m.key, since=m.created_at)
        except LookupUnsure as err:
            raise _Retry(f"looking for an earlier attempt: {err}", uncertain=True) from err

    def _call(self, m: OutboxMessage, method: str, **arguments: Any) -> Any:
        may_have_arrived = method == "chat_postMessage"
        try:
            return getattr(self._client, method)(**{k: v for k, v in arguments.items() if v is not None})
        except SlackApiError as err:
            status = err.response.status_code
            error = str(err.response.get("error") or f"HTTP {status}")
            if status == 429 or error == "ratelimited":
                raise _Retry(error, after=_retry_after(err.response.headers)) from err
            if status >= 500:
                raise _Retry(error, uncertain=may_have_arrived) from err
            if error in TRANSIENT:
                raise _Retry(error) from err
            raise _Undeliverable(error) from err
        except urllib.error.URLError as err:
            refused = isinstance(err.reason, ConnectionRefusedError)
            raise _Retry(f"{type(err.reason).__name__}", uncertain=may_have_arrived and not refused) from err
        except (TimeoutError, ConnectionError, HTTPException, OSError) as err:
            raise _Retry(type(err).__name__, uncertain=may_have_arrived) from err


def _retry_after(headers: Any) -> float:
    try:
        values = {str(k).lower(): v for k, v in dict(headers or {}).items()}
        raw = values.get("retry-after")
        if isinstance(raw, list):
            raw = raw[0]
        return max(0.0, min(float(raw), 3600.0)) if raw is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def _backoff(attempts: int) -> float:
    """1, 2, 4 ... 60 seconds, with a little jitter so replicas do not retry in step."""
    base = min(MAX_BACKOFF_SECONDS, 2.0 ** min(attempts, 6))
    return float(base * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter, not cryptography


def _never_sent(err: BaseException) -> bool:
    """The request provably never reached the server: the connection was refused, or the name did not resolve."""
    cause = err.reason if isinstance(err, urllib.error.URLError) else err
    return isinstance(cause, ConnectionRefusedError | socket.gaierror)


class LookupUnsure(Exception):
    """Slack could not be asked whether a message is there (429, 5xx, a dropped connection): cannot tell."""


def find_posted(client: WebClient, *, channel: str, thread_ts: str | None, key: str, since: float) -> str | None:
    """The ts of the message posted with `key` in its metadata, or None when it is not there: every page of the
    thread (or of the channel's history) from shortly before `since`, the time it was written. Raises LookupUnsure
    when Slack cannot tell now; an error that will not pass (no history scope, say) reads as not there."""
    cursor: str | None = None
    for _ in range(LOOKUP_PAGES):
        response = _lookup_page(client, channel, thread_ts, since, cursor, key)
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_EVENT and payload.get("key") == key:
                return str(message.get("ts"))
        cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "") or None
        if cursor is None:
            return None
    log.warning("an earlier attempt was not found in %d pages; posting again", LOOKUP_PAGES, extra={"key": key})
    return None


def _lookup_page(
    client: WebClient, channel: str, thread_ts: str | None, since: float, cursor: str | None, key: str
) -> Any:
    # Slack's clock and ours may differ by a few minutes (its request signatures allow five): look from well
    # before the message was written.
    oldest = str(since - LOOKUP_SKEW_SECONDS)
    try:
        if thread_ts:
            return client.conversations_replies(
                channel=channel, ts=thread_ts, oldest=oldest, include_all_metadata=True, limit=200, cursor=cursor
            )
        return client.conversations_history(
            channel=channel, oldest=oldest, include_all_metadata=True, limit=200, cursor=cursor
        )
    except SlackApiError as err:
        error = str(err.response.get("error"))
        if err.response.status_code == 429 or error in TRANSIENT or err.response.status_code >= 500:
            raise LookupUnsure(error) from err
        log.warning("cannot look for an earlier attempt (%s); posting again", error, extra={"key": key})
        return {}
    except (urllib.error.URLError, OSError, HTTPException) as err:
        raise LookupUnsure(type(err).__name__) from err
