"""The reboot flow, Slack-free: offer a confirmation, decide on a click, execute the reboot exactly once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

from bot.config import Target
from bot.core.confirmation import Confirmation, ConfirmationSigner, InvalidToken
from bot.core.contract import AuditEntry, FollowUp, Lock, StateUnavailable, Store
from bot.core.outbox import Outbox, OutboxMessage
from bot.core.policy import AccessPolicy
from bot.dbss.client import RebootAccepted
from bot.dbss.errors import DbssApiError, DbssError, DbssNotSent
from bot.dbss.models import Instance
from bot.metrics import Metrics, RefusalReason

log = logging.getLogger(__name__)


class Dbss(Protocol):
    """What the flow needs from DBSS: every target the bot serves (bot.core.fleet.Fleet)."""

    @property
    def targets(self) -> tuple[Target, ...]: ...

    def list_instances(self) -> list[Instance]: ...

    def reboot(self, instance_id: str, target: str | None = None) -> RebootAccepted: ...


# The channel of the break-glass console's reboots (`python -m bot console`): no Slack channel ID looks like it.
# The bot neither follows nor recovers them (there is no thread to tell); the console does, on its terminal.
CONSOLE_CHANNEL = "console"


def new_correlation_id() -> str:
    """A short ID that ties together the log lines, the audit entries and the thread of one request.

    A reference, not a secret (confirmations carry their own nonce and signature), so it comes from `random`
    (reseeded from the OS in every process, and after a fork): `secrets` would make a system call on the
    acknowledging path, and under load a thread that releases the interpreter lock there can wait
    milliseconds to get it back.
    """
    return f"{random.getrandbits(48):012x}"


# --- what offer() can answer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """A confirmation to show on a card. `instance` is None when its state could not be read."""

    confirmation: Confirmation
    token: str
    instance: Instance | None
    state_unreadable: str | None = None
    reason: str | None = None
    target: Target | None = None  # where the instance is (None: not known, only with one target and no list)

    @property
    def correlation_id(self) -> str:
        return self.confirmation.nonce


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused for a reason that comes from the bot itself (no API text in it); `code` names it in metrics."""

    reason: str
    code: RefusalReason


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another reboot of this instance holds its lock."""

    lock: Lock


@dataclass(frozen=True, slots=True)
class CoolingDown:
    """The instance was rebooted less than BOT_COOLDOWN_SECONDS ago (`confirmation`: when refused at Confirm)."""

    last: AuditEntry
    cooldown_seconds: float
    confirmation: Confirmation | None = None


@dataclass(frozen=True, slots=True)
class UnknownInstance:
    """In no list that answered. `regions`: where the bot looked (several targets); `unreadable`: which could
    not be read, so the instance may be there."""

    instance_id: str
    project_id: str
    regions: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotRebootable:
    instance: Instance


# --- what decide() can answer --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confirmed:
    confirmation: Confirmation
    by: str

    @property
    def second_approver(self) -> bool:
        return self.by != self.confirmation.requester


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
class NeedsSecondApprover:
    """The requester clicked Confirm on their own card while a second approver is required."""

    confirmation: Confirmation


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
    followup: FollowUp | None = None


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


STATE_DOWN = (
    "The bot's state store is unavailable (locked, read-only or full), so it cannot guarantee that this "
    "confirmation is used only once. Nothing was done. Tell the platform team (python -m bot check)."
)
STATE_RESET = (
    "The bot's state was reset since this card was offered (its state store is not the one that issued it), so it "
    "cannot tell whether this confirmation was used already. Nothing was done; run `/dbss-reboot {instance_id}` "
    "again."
)


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A reboot whose outcome never reached its thread, found at start-up."""

    entry: AuditEntry
    unknown: bool  # True: the bot stopped during the DBSS call; False: the outcome was recorded, not reported
    not_called: bool = False  # the bot stopped after the click was confirmed, before calling DBSS: not rebooted


OfferResult = Offer | Refused | InFlight | CoolingDown | UnknownInstance | NotRebootable
Decision = (
    Confirmed
    | Cancelled
    | Expired
    | AlreadyUsed
    | BusyOnConfirm
    | CoolingDown
    | NotRequester
    | NeedsSecondApprover
    | Refused
)
Outcome = Accepted | Rejected | NotSent | OutcomeUnknown
# Builds the messages that tell people an outcome; written to the store in the same step as the outcome.
Announce = Callable[[Outcome], Sequence[OutboxMessage]]


class RebootService:
    """Every decision of the flow, each one checked against the store and the policy again."""

    def __init__(
        self,
        *,
        dbss: Dbss,
        project_id: str,
        store: Store,
        policy: AccessPolicy,
        signer: ConfirmationSigner,
        confirm_ttl_seconds: int,
        followup_timeout_seconds: float = 600.0,
        cooldown_seconds: float = 0.0,
        require_second_approver: bool = False,
        outbox: Outbox | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dbss = dbss
        self.project_id = project_id
        self._targets = {t.key: t for t in dbss.targets}
        self.store = store
        self.policy = policy
        self._signer = signer
        self._confirm_ttl = confirm_ttl_seconds
        self._followup_timeout = followup_timeout_seconds
        # The lock covers the DBSS call and the whole follow-up; it expires on its own after a crash.
        self._lock_ttl = followup_timeout_seconds + 300.0
        self.cooldown_seconds = cooldown_seconds
        self.require_second_approver = require_second_approver
        self.outbox = outbox
        self.metrics = metrics or Metrics()
        self._clock = clock

    def _record(self, event: str, announce: Sequence[OutboxMessage] = (), /, **fields: object) -> None:
        """Append to the audit trail (with the messages that announce it) and log the event as one line."""
        self.store.record(event, announce=announce, **fields)
        if announce and self.outbox is not None:
            self.outbox.wake()  # written with the audit entry, not through put: the deliverer must look now
        log.info(event, extra={"audit": {k: v for k, v in fields.items() if v is not None}})

    def _must(self, what: str, write: Callable[[], object]) -> None:
        """A store write that must happen: now, or (with an outbox) as soon as the store is back."""
        if self.outbox is not None:
            self.outbox.attempt(what, write)
            return
        try:  # no outbox (the console): say so loudly, and let the answer DBSS gave still reach the person
            write()
        except Exception:
            log.exception("state store write failed and cannot be retried here: %s", what)

    def _release(self, instance_id: str, correlation_id: str) -> None:
        self._must(
            f"release the lock on {instance_id} ({correlation_id})",
            partial(self.store.release_lock, instance_id, correlation_id),
        )

    def _cooling_down(self, instance_id: str) -> CoolingDown | None:
        if self.cooldown_seconds <= 0:
            return None
        last = self.store.last_reboot(instance_id)
        if last is not None and self._clock() - last.at < self.cooldown_seconds:
            return CoolingDown(last, self.cooldown_seconds)
        return None

    def refuse_request(self, *, user: str, channel: str, reason: str, text: str, correlation_id: str) -> None:
        """Record a refused command in the audit trail."""
        self.metrics.refused(self._policy_code(user, channel) or "invalid_command")
        self._record(
            "refused",
            correlation_id=correlation_id,
            user_id=user,
            channel=channel,
            outcome="refused",
            detail=f"{reason} | text={text[:200]!r}",
        )

    def offer(
        self, *, user: str, channel: str, instance_id: str, correlation_id: str, reason: str | None = None
    ) -> OfferResult:
        """Check the request and read the instance's state; an Offer means a card may be shown."""
        refusal = self.check_request(user=user, channel=channel, instance_id=instance_id, correlation_id=correlation_id)
        if refusal is not None:
            return refusal
        try:
            listing: list[Instance] | DbssError = self.dbss.list_instances()
        except DbssError as err:
            listing = err
        return self.make_offer(
            user=user,
            channel=channel,
            instance_id=instance_id,
            correlation_id=correlation_id,
            listing=listing,
            reason=reason,
        )

    def check_request(self, *, user: str, channel: str, instance_id: str, correlation_id: str) -> OfferResult | None:
        """The checks that need no DBSS call: policy, in-flight lock, cooldown. None when all pass."""
        refusal = self.policy.refusal(user, channel)
        if refusal is not None:
            return self._refused(
                Refused(refusal, self._policy_code(user, channel) or "user_not_allowed"),
                user,
                channel,
                instance_id,
                correlation_id,
            )
        lock = self.store.current_lock(instance_id)
        if lock is not None:
            return self._refused(InFlight(lock), user, channel, instance_id, correlation_id)
        cooling = self._cooling_down(instance_id)
        if cooling is not None:
            return self._refused(cooling, user, channel, instance_id, correlation_id)
        return None

    def make_offer(
        self,
        *,
        user: str,
        channel: str,
        instance_id: str,
        correlation_id: str,
        listing: list[Instance] | DbssError,
        reason: str | None = None,
    ) -> OfferResult:
        """The offer, given the instance list (or the error that reading it gave).

        With several targets the list is every target's that answered (`unreadable` names the others): an instance
        found in one is offered there, if this channel may reach its region; one found nowhere is unknown, unless
        exactly one target it could be in was unreadable, which is then offered with its state unknown (as when
        the only target cannot be read)."""
        instance: Instance | None = None
        unreadable: str | None = None
        target: Target | None = None
        failed: dict[str, DbssError] = getattr(listing, "unreadable", {})
        if isinstance(listing, DbssError) and len(self._targets) > 1:  # no region answered: where is it?
            every = tuple(t.label for t in self._targets.values())
            nowhere: OfferResult = UnknownInstance(instance_id, self.project_id, every, every)
            return self._refused(nowhere, user, channel, instance_id, correlation_id)
        if isinstance(listing, DbssError):
            unreadable = _unreadable(listing)
            target = self._target(None)
        else:
            instance = next((i for i in listing if i.id == instance_id), None)
            if instance is not None:
                target = self._target(instance.target)
            else:
                labels = {t.label: t for t in self._targets.values()}
                candidates = [
                    labels[label]
                    for label in failed
                    if label in labels and not self.policy.region_refusal(channel, labels[label].region, instance_id)
                ]
                if len(candidates) != 1:
                    result: OfferResult = UnknownInstance(
                        instance_id,
                        self.project_id,
                        tuple(t.label for t in self._targets.values()) if len(self._targets) > 1 else (),
                        tuple(failed),
                    )
                    return self._refused(result, user, channel, instance_id, correlation_id)
                target = candidates[0]
                unreadable = _unreadable(failed[target.label], target.label)
        if target is not None and (refusal := self.policy.region_refusal(channel, target.region, instance_id)):
            return self._refused(Refused(refusal, "region_not_allowed"), user, channel, instance_id, correlation_id)
        if instance is not None and not instance.rebootable:
            return self._refused(NotRebootable(instance), user, channel, instance_id, correlation_id)
        expires_at = int(self._clock()) + self._confirm_ttl
        confirmation, token = self._signer.issue(
            instance_id=instance_id,
            requester=user,
            channel=channel,
            expires_at=expires_at,
            nonce=correlation_id,
            target=target.key if target is not None and len(self._targets) > 1 else None,
            generation=self.store.generation(),
        )
        self._record(
            "requested",
            correlation_id=correlation_id,
            user_id=user,
            instance_id=instance_id,
            channel=channel,
            outcome="offered",
            detail="; ".join(part for part in (f"reason: {reason}" if reason else None, unreadable) if part) or None,
            region=self._region_field(target),
        )
        return Offer(confirmation, token, instance, unreadable, reason, target)

    def _refused(
        self, result: OfferResult, user: str, channel: str, instance_id: str, correlation_id: str
    ) -> OfferResult:
        self.metrics.refused(refusal_reason(result) or "invalid_command")
        self._record(
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
        self._record(
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
        """Check a click from scratch: the token, its age, the clicker, the channel; then use it up, once.

        If the state store fails, the answer is a refusal: no single-use guarantee, no reboot."""
        try:
            decision = self._decide(token=token, clicker=clicker, channel=channel, thread_ts=thread_ts, action=action)
        except StateUnavailable:
            log.exception("state store unavailable while deciding on a click")
            decision = Refused(STATE_DOWN, "state_unavailable")
        if (reason := refusal_reason(decision)) is not None:
            self.metrics.refused(reason)
        return decision

    def _target(self, key: str | None) -> Target | None:
        """The target a key names; no key names the only one, when there is only one."""
        if key is None:
            return next(iter(self._targets.values())) if len(self._targets) == 1 else None
        return self._targets.get(key)

    def target_of(self, c: Confirmation) -> Target | None:
        """The target a confirmation reboots in (None: the region it was made for is no longer served)."""
        return self._target(c.target)

    def _region_field(self, target: Target | None) -> str | None:
        """The audit trail's region: named once the bot serves several targets (one target needs no name)."""
        return target.label if target is not None and len(self._targets) > 1 else None

    def _region_refusal(self, c: Confirmation, channel: str) -> str | None:
        """BOT_CHANNEL_TARGETS, checked again at the click: the scoping may have changed since the card."""
        target = self.target_of(c)
        if target is None:
            return None  # the reboot itself is refused as not sent: the region is no longer served
        return self.policy.region_refusal(channel, target.region, c.instance_id)

    def _policy_code(self, user: str, channel: str) -> RefusalReason | None:
        """Which rule of the access policy refuses this user here, if one does."""
        if self.policy.user_refusal(user) is not None:
            return "user_not_allowed"
        return "channel_not_allowed" if self.policy.refusal(user, channel) is not None else None

    def _decide(
        self, *, token: str, clicker: str, channel: str, thread_ts: str, action: Literal["confirm", "cancel"]
    ) -> Decision:
        try:
            c = self._signer.verify(token)
        except InvalidToken:
            self._record("refused", user_id=clicker, channel=channel, outcome="refused", detail="invalid token")
            return Refused("This button was not issued by this bot, or was altered. Nothing was done.", "invalid_token")
        audit = {"correlation_id": c.nonce, "user_id": clicker, "instance_id": c.instance_id, "channel": channel}
        if c.generation != self.store.generation():
            # The store that would hold this card's claim is not the one that issued it (Redis emptied, the state
            # file replaced): whether it was used already cannot be known, so it is not used now.
            self._record("refused", outcome="refused", detail="state store reset since the card was offered", **audit)
            return Refused(STATE_RESET.format(instance_id=c.instance_id), "state_reset")
        if channel != c.channel:
            self._record("refused", outcome="refused", detail="token for another channel", **audit)
            return Refused("This confirmation belongs to another channel. Nothing was done.", "wrong_channel")
        refusal = self.policy.refusal(clicker, channel)
        if refusal is not None:
            self._record("refused", outcome="refused", detail=f"{action} by user not allowed", **audit)
            return Refused(refusal, self._policy_code(clicker, channel) or "user_not_allowed")
        if action == "confirm" and (region_refusal := self._region_refusal(c, channel)) is not None:
            self._record("refused", outcome="refused", detail="region not reachable from this channel", **audit)
            return Refused(region_refusal, "region_not_allowed")
        if action == "confirm" and self.require_second_approver and clicker == c.requester:
            self._record("refused", outcome="refused", detail="requester cannot approve their own reboot", **audit)
            return NeedsSecondApprover(c)
        if action == "confirm" and not self.require_second_approver and clicker != c.requester:
            self._record("refused", outcome="refused", detail="confirm by someone other than the requester", **audit)
            return NotRequester(c, clicker)
        if action == "confirm" and clicker != c.requester:
            requester_refusal = self.policy.refusal(c.requester, channel)
            if requester_refusal is not None:  # an approval needs a requester who may still ask
                self._record("refused", outcome="refused", detail="requester no longer allowed", **audit)
                return Refused(
                    f"{c.requester} asked for this reboot but may no longer request reboots here "
                    f"({requester_refusal}) Nothing was done.",
                    "requester_not_allowed",
                )
        if action == "confirm" and self._clock() > c.expires_at:
            if not self.store.claim_confirmation(
                c.nonce, instance_id=c.instance_id, user_id=clicker, decision="expired"
            ):  # answered before it expired (a stale tab): what happened then stands
                self._record("refused", outcome="refused", detail="confirmation already used", **audit)
                return AlreadyUsed(c)
            self._record("expired", outcome="expired", thread_ts=thread_ts, **audit)
            return Expired(c)
        if not self.store.claim_confirmation(c.nonce, instance_id=c.instance_id, user_id=clicker, decision=action):
            self._record("refused", outcome="refused", detail="confirmation already used", **audit)
            return AlreadyUsed(c)
        if action == "cancel":
            self._record("cancelled", outcome="cancelled", thread_ts=thread_ts, **audit)
            return Cancelled(c, clicker)
        held = self.store.current_lock(c.instance_id)
        if held is not None:
            self._record("refused", outcome="refused", detail=f"in flight ({held.correlation_id})", **audit)
            return BusyOnConfirm(c, held)
        cooling = self._cooling_down(c.instance_id)
        if cooling is not None:
            self._record("refused", outcome="refused", detail="cooldown", thread_ts=thread_ts, **audit)
            return CoolingDown(cooling.last, cooling.cooldown_seconds, c)
        try:
            taken, lock = self.store.acquire_lock(
                c.instance_id,
                owner=clicker,
                channel=channel,
                thread_ts=thread_ts,
                correlation_id=c.nonce,
                ttl_seconds=self._lock_ttl,
            )
        except Exception:  # no answer is not "not taken": it may have been, and must not stay for its whole TTL
            self._release(c.instance_id, c.nonce)  # by this confirmation's ID: never another's lock
            raise
        if not taken:
            self._record("refused", outcome="refused", detail=f"in flight ({lock.correlation_id})", **audit)
            return BusyOnConfirm(c, lock)
        detail = f"requested by {c.requester}, approved by {clicker}" if clicker != c.requester else None
        try:
            self._record("confirmed", outcome="confirmed", thread_ts=thread_ts, detail=detail, **audit)
        except Exception:  # no audit entry, no reboot: and no lock left behind either
            self._release(c.instance_id, c.nonce)
            raise
        return Confirmed(c, clicker)

    def history(self, instance_id: str | None, *, limit: int = 10) -> tuple[list[AuditEntry], dict[str, str]]:
        """The latest reboots (newest first) and, by correlation ID, how each follow-up ended."""
        entries = self.store.reboots(instance_id=instance_id, limit=limit)
        outcomes = {
            e.correlation_id: outcome
            for e in entries
            if e.correlation_id and (outcome := self.store.followup_outcome(e.correlation_id))
        }
        return entries, outcomes

    def recover(
        self,
        announce: Callable[[Interrupted], Sequence[OutboxMessage]] | None = None,
        *,
        console_user: str | None = None,
    ) -> list[Interrupted]:
        """At start-up: reboots interrupted by a crash. A DBSS call with no recorded result gets the result
        'unknown' (never retried); each thread is told through the outbox, once, whichever replica gets here first
        (the message's key is the outcome's own).

        The break-glass console's reboots (channel CONSOLE_CHANNEL) are not the bot's: a console may be waiting for
        DBSS right now, and there is no thread to tell. The console recovers them itself (`console_user`: only that
        user's, told on the terminal, which the audit trail records as the outcome reported)."""
        found = []
        for entry in self.store.interrupted():
            if (entry.channel == CONSOLE_CHANNEL) != (console_user is not None):
                continue
            if console_user is not None and entry.user_id != console_user:
                continue
            unknown = entry.event == "reboot_intent"
            interrupted = Interrupted(entry, unknown, not_called=entry.event == "confirmed")
            messages = list(announce(interrupted)) if announce is not None else []
            who = "console" if console_user else "bot"
            if interrupted.not_called or unknown:
                outcome, detail = (
                    ("not_sent", f"the {who} stopped before calling DBSS")  # no intent: DBSS was provably not called
                    if interrupted.not_called
                    else ("unknown", f"the {who} stopped while waiting for DBSS's answer")
                )
                self._record(
                    "reboot_result",
                    messages,
                    correlation_id=entry.correlation_id,
                    user_id=entry.user_id,
                    instance_id=entry.instance_id,
                    channel=entry.channel,
                    thread_ts=entry.thread_ts,
                    outcome=outcome,
                    detail=detail,
                )
                if interrupted.not_called and entry.instance_id and entry.correlation_id:
                    self._release(entry.instance_id, entry.correlation_id)
            else:
                self.store.enqueue(messages)
            if console_user is not None:
                self.reported(entry.correlation_id or "", how="on the console, at its next start")
            found.append(interrupted)
        return found

    def reported(self, correlation_id: str, *, how: str) -> None:
        """Record that a reboot's outcome reached a person outside Slack (the console's terminal)."""
        self._record("outcome_reported", correlation_id=correlation_id, outcome=f"{correlation_id}:outcome", detail=how)

    def confirmation(self, token: str) -> Confirmation | None:
        """What a token asks for, if this bot's key signed it (nothing is checked or used up: see decide)."""
        try:
            return self._signer.verify(token)
        except InvalidToken:
            return None

    def execute(
        self, confirmed: Confirmed, *, thread_ts: str, announce: Announce | None = None, store_followup: bool = True
    ) -> Outcome:
        """Call DBSS once. The intent is recorded before the call; the outcome after it, together with the
        messages that announce it (`announce`). Once DBSS has answered, a failing store delays the records but
        never the messages: they wait in the outbox's memory and the writes are retried.

        `store_followup=False`: the caller follows the reboot itself (the console, in the foreground), so the
        follow-up is not stored where the bot's follower would take it; the lock still lasts until its deadline."""
        c = confirmed.confirmation
        audit = {
            "correlation_id": c.nonce,
            "user_id": confirmed.by,
            "instance_id": c.instance_id,
            "channel": c.channel,
            "thread_ts": thread_ts,
            "region": self._region_field(self.target_of(c)) or (c.target if len(self._targets) > 1 else None),
        }
        try:
            self._record("reboot_intent", **audit)
        except Exception:
            log.exception("state store unavailable before the DBSS call", extra={"correlation_id": c.nonce})
            self._release(c.instance_id, c.nonce)
            not_sent = NotSent(
                c.instance_id, "the bot could not record its intent in the state store, so it did not call DBSS"
            )
            self._settle(not_sent, announce, outcome="not_sent", detail=not_sent.detail, **audit)
            return not_sent
        try:
            accepted = self.dbss.reboot(c.instance_id, c.target)
        except DbssApiError as err:
            self._release(c.instance_id, c.nonce)
            rejected = Rejected(c.instance_id, err)
            self._settle(
                rejected, announce, outcome="rejected", dbss_request_id=err.request_id, detail=str(err)[:500], **audit
            )
            return rejected
        except DbssNotSent as err:
            self._release(c.instance_id, c.nonce)
            never_sent = NotSent(c.instance_id, str(err))
            self._settle(never_sent, announce, outcome="not_sent", detail=str(err), **audit)
            return never_sent
        except Exception as err:  # sent, but no usable answer: keep the lock until it expires, never retry
            if not isinstance(err, DbssError):
                log.exception("unexpected error from the DBSS client", extra={"correlation_id": c.nonce})
            unknown = OutcomeUnknown(c.instance_id, str(err) or type(err).__name__)
            self._settle(unknown, announce, outcome="unknown", detail=unknown.detail, **audit)
            return unknown
        now = self._clock()
        followup = FollowUp(
            correlation_id=c.nonce,
            instance_id=c.instance_id,
            requester=c.requester,
            approver=confirmed.by,
            channel=c.channel,
            thread_ts=thread_ts,
            started_at=now,
            deadline=now + self._followup_timeout,
            target=c.target,  # None with one target: that one
        )
        outcome = Accepted(c.instance_id, accepted.request_id, followup)
        # The announcement is written before the follow-up, so its first progress message comes after it.
        self._settle(outcome, announce, outcome="accepted", dbss_request_id=accepted.request_id, **audit)
        if store_followup:
            self._must(f"follow {c.nonce}", partial(self.store.add_followup, followup))
        self._must(
            f"extend the lock of {c.nonce}",
            partial(self.store.extend_lock, c.instance_id, c.nonce, until=followup.deadline + 300.0),
        )
        return outcome

    def _settle(self, result: Outcome, announce: Announce | None, /, **fields: object) -> None:
        """Record the result and its messages in one step; if the store fails, the messages go out anyway."""
        self.metrics.reboot(str(fields["outcome"]))
        try:
            messages = list(announce(result)) if announce is not None else []
        except Exception:  # a bug in the wording must not cost the person the answer: plain words instead
            log.exception("could not build the announcement; sending a plain one")
            messages = list(announce(OutcomeUnknown(result.instance_id, "see the audit trail"))) if announce else []
        try:
            self._record("reboot_result", messages, **fields)
        except Exception:
            if self.outbox is None:
                log.exception("could not record the reboot result (the console shows it all the same)")
                return
            log.exception("could not record the reboot result; telling people first, recording later")
            self.outbox.put(messages)
            self.outbox.later(
                f"record the result of {fields.get('correlation_id')}", partial(self._record, "reboot_result", **fields)
            )


def _unreadable(error: DbssError, label: str | None = None) -> str:
    """Why an instance's state is not shown on its card."""
    where = f" in {label}" if label else ""
    if isinstance(error, DbssApiError):
        return f"DBSS refused the instance list{where}: HTTP {error.status_code} {error.error_code or ''}".strip()
    return f"DBSS could not be reached{where} to read the instance list ({type(error).__name__})"


def refusal_reason(result: object) -> RefusalReason | None:
    """The metrics' name for why an offer or a click came to nothing; None when it did not."""
    match result:
        case Refused(code=code):
            return code
        case InFlight() | BusyOnConfirm():
            return "in_flight"
        case CoolingDown():
            return "cooldown"
        case UnknownInstance():
            return "unknown_instance"
        case NotRebootable():
            return "not_rebootable"
        case NotRequester():
            return "not_requester"
        case NeedsSecondApprover():
            return "needs_second_approver"
        case AlreadyUsed():
            return "already_used"
        case Expired():
            return "expired"
    return None
