"""The reboot flow, Slack-free: offer a confirmation, decide on a click, execute the reboot exactly once."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.core.confirmation import Confirmation, ConfirmationSigner, InvalidToken
from bot.core.policy import AccessPolicy
from bot.core.store import Lock, StateStore
from bot.dbss.client import RebootAccepted
from bot.dbss.errors import DbssApiError, DbssError, DbssNotSent
from bot.dbss.models import Instance

log = logging.getLogger(__name__)


class Dbss(Protocol):
    """What the flow needs from DBSS (the real client, or a simulator)."""

    def find_instance(self, instance_id: str) -> Instance | None: ...

    def reboot(self, instance_id: str) -> RebootAccepted: ...


def new_correlation_id() -> str:
    """A short ID that ties together the log lines, the audit entries and the thread of one request."""
    return secrets.token_hex(6)


# --- what offer() can answer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """A confirmation to show on a card. `instance` is None when its state could not be read."""

    confirmation: Confirmation
    token: str
    instance: Instance | None
    state_unreadable: str | None = None

    @property
    def correlation_id(self) -> str:
        return self.confirmation.nonce


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused for a reason that comes from the bot itself (no API text in it)."""

    reason: str


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another reboot of this instance holds its lock."""

    lock: Lock


@dataclass(frozen=True, slots=True)
class UnknownInstance:
    instance_id: str
    project_id: str


@dataclass(frozen=True, slots=True)
class NotRebootable:
    instance: Instance


# --- what decide() can answer --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confirmed:
    confirmation: Confirmation
    by: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    confirmation: Confirmation
    by: str


@dataclass(frozen=True, slots=True)
class Expired:
    confirmation: Confirmation


@dataclass(frozen=True, slots=True)
class AlreadyUsed:
    confirmation: Confirmation


@dataclass(frozen=True, slots=True)
class NotRequester:
    """Someone other than the requester clicked Confirm."""

    confirmation: Confirmation
    clicker: str


@dataclass(frozen=True, slots=True)
class BusyOnConfirm:
    """Confirmed, but another reboot of the instance took the lock in between."""

    confirmation: Confirmation
    lock: Lock


# --- what execute() can answer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    instance_id: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """DBSS (or its gateway, or IAM) answered with an error: the reboot did not happen."""

    instance_id: str
    error: DbssApiError


@dataclass(frozen=True, slots=True)
class NotSent:
    """The request never reached DBSS: nothing happened."""

    instance_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    """The request may have reached DBSS; it is not retried."""

    instance_id: str
    detail: str


OfferResult = Offer | Refused | InFlight | UnknownInstance | NotRebootable
Decision = Confirmed | Cancelled | Expired | AlreadyUsed | BusyOnConfirm | NotRequester | Refused
Outcome = Accepted | Rejected | NotSent | OutcomeUnknown


class RebootService:
    """Every decision of the flow, each one checked against the store and the policy again."""

    def __init__(
        self,
        *,
        dbss: Dbss,
        project_id: str,
        store: StateStore,
        policy: AccessPolicy,
        signer: ConfirmationSigner,
        confirm_ttl_seconds: int,
        lock_ttl_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dbss = dbss
        self.project_id = project_id
        self.store = store
        self.policy = policy
        self._signer = signer
        self._confirm_ttl = confirm_ttl_seconds
        self._lock_ttl = lock_ttl_seconds
        self._clock = clock

    def refuse_request(self, *, user: str, channel: str, reason: str, text: str, correlation_id: str) -> None:
        """Record a refused command in the audit trail."""
        self.store.record(
            "refused",
            correlation_id=correlation_id,
            user_id=user,
            channel=channel,
            outcome="refused",
            detail=f"{reason} | text={text[:200]!r}",
        )

    def offer(self, *, user: str, channel: str, instance_id: str, correlation_id: str) -> OfferResult:
        """Check the request and read the instance's state; an Offer means a card may be shown."""
        refusal = self.policy.refusal(user, channel)
        if refusal is not None:
            return self._refused(Refused(refusal), user, channel, instance_id, correlation_id)
        lock = self.store.current_lock(instance_id)
        if lock is not None:
            return self._refused(InFlight(lock), user, channel, instance_id, correlation_id)
        instance: Instance | None = None
        unreadable: str | None = None
        try:
            instance = self.dbss.find_instance(instance_id)
        except DbssApiError as err:
            unreadable = f"DBSS refused the instance list: HTTP {err.status_code} {err.error_code or ''}".strip()
        except DbssError as err:
            unreadable = f"DBSS could not be reached to read the instance list ({type(err).__name__})"
        if unreadable is None:
            if instance is None:
                result: OfferResult = UnknownInstance(instance_id, self.project_id)
                return self._refused(result, user, channel, instance_id, correlation_id)
            if not instance.rebootable:
                return self._refused(NotRebootable(instance), user, channel, instance_id, correlation_id)
        expires_at = int(self._clock()) + self._confirm_ttl
        confirmation, token = self._signer.issue(
            instance_id=instance_id, requester=user, channel=channel, expires_at=expires_at, nonce=correlation_id
        )
        self.store.record(
            "requested",
            correlation_id=correlation_id,
            user_id=user,
            instance_id=instance_id,
            channel=channel,
            outcome="offered",
            detail=unreadable,
        )
        return Offer(confirmation, token, instance, unreadable)

    def _refused(
        self, result: OfferResult, user: str, channel: str, instance_id: str, correlation_id: str
    ) -> OfferResult:
        self.store.record(
            "refused",
            correlation_id=correlation_id,
            user_id=user,
            instance_id=instance_id,
            channel=channel,
            outcome="refused",
            detail=type(result).__name__,
        )
        return result

    def card_posted(self, offer: Offer, *, thread_ts: str) -> None:
        c = offer.confirmation
        self.store.record(
            "card_posted",
            correlation_id=c.nonce,
            user_id=c.requester,
            instance_id=c.instance_id,
            channel=c.channel,
            thread_ts=thread_ts,
        )

    def decide(
        self, *, token: str, clicker: str, channel: str, thread_ts: str, action: Literal["confirm", "cancel"]
    ) -> Decision:
        """Check a click from scratch: the token, its age, the clicker, the channel; then use it up, once."""
        try:
            c = self._signer.verify(token)
        except InvalidToken:
            self.store.record("refused", user_id=clicker, channel=channel, outcome="refused", detail="invalid token")
            return Refused("This button was not issued by this bot, or was altered. Nothing was done.")
        audit = {"correlation_id": c.nonce, "user_id": clicker, "instance_id": c.instance_id, "channel": channel}
        if channel != c.channel:
            self.store.record("refused", outcome="refused", detail="token for another channel", **audit)
            return Refused("This confirmation belongs to another channel. Nothing was done.")
        refusal = self.policy.refusal(clicker, channel)
        if refusal is not None:
            self.store.record("refused", outcome="refused", detail=f"{action} by user not allowed", **audit)
            return Refused(refusal)
        if action == "confirm" and clicker != c.requester:
            self.store.record(
                "refused", outcome="refused", detail="confirm by someone other than the requester", **audit
            )
            return NotRequester(c, clicker)
        if action == "confirm" and self._clock() > c.expires_at:
            self.store.claim_confirmation(c.nonce, instance_id=c.instance_id, user_id=clicker, decision="expired")
            self.store.record("expired", outcome="expired", thread_ts=thread_ts, **audit)
            return Expired(c)
        if not self.store.claim_confirmation(c.nonce, instance_id=c.instance_id, user_id=clicker, decision=action):
            self.store.record("refused", outcome="refused", detail="confirmation already used", **audit)
            return AlreadyUsed(c)
        if action == "cancel":
            self.store.record("cancelled", outcome="cancelled", thread_ts=thread_ts, **audit)
            return Cancelled(c, clicker)
        taken, lock = self.store.acquire_lock(
            c.instance_id,
            owner=clicker,
            channel=channel,
            thread_ts=thread_ts,
            correlation_id=c.nonce,
            ttl_seconds=self._lock_ttl,
        )
        if not taken:
            self.store.record("refused", outcome="refused", detail=f"in flight ({lock.correlation_id})", **audit)
            return BusyOnConfirm(c, lock)
        self.store.record("confirmed", outcome="confirmed", thread_ts=thread_ts, **audit)
        return Confirmed(c, clicker)

    def execute(self, confirmed: Confirmed, *, thread_ts: str) -> Outcome:
        """Call DBSS once. The intent is recorded before the call and the outcome after it."""
        c = confirmed.confirmation
        audit = {
            "correlation_id": c.nonce,
            "user_id": confirmed.by,
            "instance_id": c.instance_id,
            "channel": c.channel,
            "thread_ts": thread_ts,
        }
        self.store.record("reboot_intent", **audit)
        try:
            accepted = self.dbss.reboot(c.instance_id)
        except DbssApiError as err:
            self.store.release_lock(c.instance_id, c.nonce)
            self.store.record(
                "reboot_result", outcome="rejected", dbss_request_id=err.request_id, detail=str(err)[:500], **audit
            )
            return Rejected(c.instance_id, err)
        except DbssNotSent as err:
            self.store.release_lock(c.instance_id, c.nonce)
            self.store.record("reboot_result", outcome="not_sent", detail=str(err), **audit)
            return NotSent(c.instance_id, str(err))
        except DbssError as err:  # sent, but no usable answer: keep the lock until it expires, never retry
            self.store.record("reboot_result", outcome="unknown", detail=str(err), **audit)
            return OutcomeUnknown(c.instance_id, str(err))
        self.store.record("reboot_result", outcome="accepted", dbss_request_id=accepted.request_id, **audit)
        return Accepted(c.instance_id, accepted.request_id)
