"""Shared state in Redis, for two or more replicas: what must be the same everywhere lives here.

Used confirmations, in-flight locks, cooldowns (the last reboot of each instance), the confirmation key,
follow-ups with their ownership, and the outbox. Each follow-up is owned by one replica through a lease it
renews on every tick; when a replica dies its leases lapse and another replica takes its follow-ups over.
The outbox works the same way: one replica at a time delivers a thread's messages (in order), under a lease
per thread, and a dead replica's pending messages are delivered by another. The audit trail stays in each
replica's own SQLite file (BOT_STATE_PATH).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import redis

from bot.core.outbox import OutboxMessage, State
from bot.core.store import AuditEntry, FollowUp, Lock, StateStore, StateUnavailable, check_followup_updates

log = logging.getLogger(__name__)

USED_CONFIRMATION_SECONDS = 7 * 24 * 3600  # far beyond any token's expiry (BOT_CONFIRM_TTL_SECONDS <= 3600)
LAST_REBOOT_SECONDS = 7 * 24 * 3600

# Compare-and-delete and compare-and-extend: only the holder may release or extend its lock.
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end return 0"
# Take a follow-up's lease if free, or renew it if it is ours.
LEASE = (
    "local owner = redis.call('GET', KEYS[1]) "
    "if owner == false or owner == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0"
)
# Change a pending outbox message only if it is still the version we read (cjson is Redis' own).
OUTBOX_FINISH = (
    "local raw = redis.call('GET', KEYS[1]) if not raw then return 0 end "
    "local m = cjson.decode(raw) if m['version'] ~= tonumber(ARGV[1]) then return 0 end "
    "local changes = cjson.decode(ARGV[2]) for k, v in pairs(changes) do m[k] = v end "
    "m['attempts'] = m['attempts'] + 1 "
    "redis.call('SET', KEYS[1], cjson.encode(m), 'KEEPTTL') "
    "if m['state'] ~= 'pending' then redis.call('ZREM', KEYS[2], ARGV[3]) end return 1"
)
# Replace the content of a pending update (a newer state of the same message), bumping its version.
OUTBOX_COALESCE = (
    "local raw = redis.call('GET', KEYS[1]) if not raw then return 0 end "
    "local m = cjson.decode(raw) if m['state'] ~= 'pending' then return 0 end "
    "local changes = cjson.decode(ARGV[1]) m['text'] = changes['text'] m['blocks'] = changes['blocks'] "
    "m['version'] = m['version'] + 1 redis.call('SET', KEYS[1], cjson.encode(m), 'KEEPTTL') return 1"
)
OUTBOX_SECONDS = 7 * 24 * 3600


class RedisBackedStore(StateStore):
    """The SQLite store for the local audit trail, with the shared state in Redis."""

    def __init__(
        self,
        path: str | Path,
        *,
        client: redis.Redis,
        prefix: str = "dbss-bot:",
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, clock=clock)
        self._redis = client
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        with self._shared():
            client.ping()

    @classmethod
    def from_url(cls, path: str | Path, url: str, **kwargs: Any) -> RedisBackedStore:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(path, client=client, **kwargs)

    def key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    @contextmanager
    def _shared(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as err:
            self.failed_at = time.monotonic()
            raise StateUnavailable(f"shared state (Redis): {err}") from err

    def close(self) -> None:
        super().close()
        self._redis.close()

    def shared_heartbeat(self) -> None:
        """A small real write to Redis (a key of this replica's that expires), for the readiness check."""
        with self._shared():
            self._redis.set(self.key("heartbeat", self.replica), repr(self._clock()), px=10_000)

    # --- confirmations ----------------------------------------------------------------------------------

    def confirmation_key(self) -> bytes:
        with self._shared():
            self._redis.set(self.key("confirm-key"), secrets.token_bytes(32), nx=True)
            value = self._redis.get(self.key("confirm-key"))
        assert isinstance(value, bytes)
        return value

    def claim_confirmation(self, nonce: str, *, instance_id: str, user_id: str, decision: str) -> bool:
        value = json.dumps({"instance_id": instance_id, "user_id": user_id, "decision": decision, "at": self._clock()})
        with self._shared():
            return bool(self._redis.set(self.key("used", nonce), value, nx=True, ex=USED_CONFIRMATION_SECONDS))

    # --- locks ------------------------------------------------------------------------------------------

    def acquire_lock(
        self,
        instance_id: str,
        *,
        owner: str,
        channel: str,
        thread_ts: str | None,
        correlation_id: str,
        ttl_seconds: float,
    ) -> tuple[bool, Lock]:
        now = self._clock()
        lock = Lock(instance_id, owner, channel, thread_ts, correlation_id, now, now + ttl_seconds)
        with self._shared():
            if self._redis.set(self.key("lock", instance_id), _dump(lock), nx=True, px=int(ttl_seconds * 1000)):
                return True, lock
        held = self.current_lock(instance_id)
        return (
            (False, held)
            if held is not None
            else self.acquire_lock(
                instance_id,
                owner=owner,
                channel=channel,
                thread_ts=thread_ts,
                correlation_id=correlation_id,
                ttl_seconds=ttl_seconds,
            )
        )

    def current_lock(self, instance_id: str) -> Lock | None:
        with self._shared():
            raw = self._redis.get(self.key("lock", instance_id))
        return Lock(**json.loads(raw)) if raw else None

    def release_lock(self, instance_id: str, correlation_id: str) -> None:
        held = self.current_lock(instance_id)
        if held is not None and held.correlation_id == correlation_id:
            with self._shared():
                self._redis.eval(RELEASE, 1, self.key("lock", instance_id), _dump(held))

    def extend_lock(self, instance_id: str, correlation_id: str, *, until: float) -> None:
        held = self.current_lock(instance_id)
        if held is None or held.correlation_id != correlation_id:
            return
        with self._shared():
            self._redis.eval(EXTEND, 1, self.key("lock", instance_id), _dump(held), int(until * 1000))

    # --- cooldowns --------------------------------------------------------------------------------------

    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None:
        """The messages go to the shared outbox first, then the entry to this replica's audit trail (if that
        write fails, the caller writes the messages again, which keeps the first, and retries the entry)."""
        self.enqueue(announce)
        super().record(event, **fields)
        if event == "reboot_result" and fields.get("outcome") in ("accepted", "unknown") and fields.get("instance_id"):
            entry = {name: fields.get(name) for name in AuditEntry.__slots__}
            entry.update(at=self._clock(), event=event)
            with self._shared():
                self._redis.set(
                    self.key("last-reboot", str(fields["instance_id"])), json.dumps(entry), ex=LAST_REBOOT_SECONDS
                )

    def last_reboot(self, instance_id: str) -> AuditEntry | None:
        with self._shared():
            raw = self._redis.get(self.key("last-reboot", instance_id))
        return AuditEntry(**json.loads(raw)) if raw else super().last_reboot(instance_id)

    # --- follow-ups -------------------------------------------------------------------------------------

    def add_followup(self, followup: FollowUp) -> None:
        with self._shared():
            pipe = self._redis.pipeline()
            pipe.set(self.key("followup", followup.correlation_id), json.dumps(asdict(followup)), nx=True)
            pipe.sadd(self.key("followups"), followup.correlation_id)
            pipe.set(self.key("followup-owner", followup.correlation_id), self.replica, px=self._lease_ms)
            pipe.execute()

    def active_followups(self) -> list[FollowUp]:
        """The follow-ups this replica owns: its own, and any whose owner's lease has lapsed (taken over)."""
        owned: list[FollowUp] = []
        with self._shared():
            for raw_id in sorted(self._redis.smembers(self.key("followups"))):
                cid = _text(raw_id)
                if not self._redis.eval(LEASE, 1, self.key("followup-owner", cid), self.replica, self._lease_ms):
                    continue
                raw = self._redis.get(self.key("followup", cid))
                if raw:
                    owned.append(FollowUp(**json.loads(raw)))
        return sorted(owned, key=lambda f: f.started_at)

    def update_followups(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        check_followup_updates(updates)
        with self._shared():
            for cid, fields in updates:
                raw = self._redis.get(self.key("followup", cid))
                if raw:
                    data = json.loads(raw)
                    data.update(fields)
                    self._redis.set(self.key("followup", cid), json.dumps(data), xx=True)

    def finish_followup(self, correlation_id: str, outcome: str) -> bool:
        """Only the replica that removes it from the active set reports the ending."""
        with self._shared():
            if not self._redis.srem(self.key("followups"), correlation_id):
                return False
            self._redis.set(self.key("followup-outcome", correlation_id), outcome, ex=LAST_REBOOT_SECONDS)
            self._redis.delete(self.key("followup-owner", correlation_id))
        return True

    def followup_outcome(self, correlation_id: str) -> str | None:
        with self._shared():
            raw = self._redis.get(self.key("followup-outcome", correlation_id))
        return _text(raw) if raw else None

    def interrupted(self) -> list[AuditEntry]:
        found = super().interrupted()
        if not found:
            return found
        with self._shared():
            told = self._redis.mget([self.key("outbox-key", f"{e.correlation_id}:outcome") for e in found])
        return [e for e, said in zip(found, told, strict=True) if not said]

    # --- the outbox -------------------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        now = self._clock()
        with self._shared():
            for m in messages:
                if m.kind == "update" and m.target and m.state == "pending":
                    pending = self._redis.get(self.key("outbox-update", m.target))
                    changes = json.dumps({"text": m.text, "blocks": m.blocks})
                    if pending and self._redis.eval(OUTBOX_COALESCE, 1, self.key("outbox", _text(pending)), changes):
                        continue
                number = int(self._redis.incr(self.key("outbox-seq")))
                if not self._redis.set(self.key("outbox-key", m.key), number, nx=True, ex=OUTBOX_SECONDS):
                    continue
                stored = replace(m, id=number, version=0, created_at=m.created_at or now)
                pipe = self._redis.pipeline()
                pipe.set(self.key("outbox", str(number)), json.dumps(asdict(stored)), ex=OUTBOX_SECONDS)
                if m.state == "pending":
                    pipe.zadd(self.key("outbox-pending"), {str(number): number})
                    if m.kind == "update" and m.target:
                        pipe.set(self.key("outbox-update", m.target), number, ex=OUTBOX_SECONDS)
                pipe.execute()

    def outbox_due(self, now: float, limit: int) -> list[OutboxMessage]:
        """The oldest pending message of each thread whose delivery lease this replica holds or takes."""
        with self._shared():
            ids = [_text(i) for i in cast(list[bytes], self._redis.zrange(self.key("outbox-pending"), 0, 999))]
            if not ids:
                return []
            raws = self._redis.mget([self.key("outbox", i) for i in ids])
            heads: dict[str, OutboxMessage] = {}
            for raw in raws:
                if raw:
                    m = OutboxMessage(**json.loads(raw))
                    if m.state == "pending":
                        heads.setdefault(m.group, m)
            due: list[OutboxMessage] = []
            for group, m in heads.items():
                if m.not_before > now or len(due) >= limit:
                    continue
                if self._redis.eval(LEASE, 1, self.key("outbox-lease", group), self.replica, self._lease_ms):
                    due.append(m)
        return due

    def outbox_get(self, key: str) -> OutboxMessage | None:
        with self._shared():
            number = self._redis.get(self.key("outbox-key", key))
            raw = self._redis.get(self.key("outbox", _text(number))) if number else None
        return OutboxMessage(**json.loads(raw)) if raw else None

    def outbox_done(self, message: OutboxMessage, *, state: State, ts: str | None, detail: str | None) -> bool:
        changes: dict[str, Any] = {"state": state, "detail": detail}
        if ts is not None:
            changes["ts"] = ts
        with self._shared():
            return bool(
                self._redis.eval(
                    OUTBOX_FINISH,
                    2,
                    self.key("outbox", str(message.id)),
                    self.key("outbox-pending"),
                    message.version,
                    json.dumps(changes),
                    str(message.id),
                )
            )

    def outbox_retry(self, message: OutboxMessage, *, not_before: float, uncertain: bool, detail: str) -> None:
        changes = {"not_before": not_before, "uncertain": uncertain, "detail": detail}
        with self._shared():
            self._redis.eval(
                OUTBOX_FINISH.replace("m['version'] ~= tonumber(ARGV[1])", "false"),
                2,
                self.key("outbox", str(message.id)),
                self.key("outbox-pending"),
                message.version,
                json.dumps(changes),
                str(message.id),
            )

    def outbox_backlog(self, now: float) -> tuple[int, float]:
        with self._shared():
            count = int(self._redis.zcard(self.key("outbox-pending")))
            first = cast(list[bytes], self._redis.zrange(self.key("outbox-pending"), 0, 0))
            raw = self._redis.get(self.key("outbox", _text(first[0]))) if first else None
        oldest = float(json.loads(raw).get("created_at") or now) if raw else now
        return count, now - oldest


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dump(lock: Lock) -> str:
    return json.dumps(asdict(lock), sort_keys=True)
