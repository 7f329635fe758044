"""Shared state in Redis, for two or more replicas: what must be the same everywhere lives here.

Used confirmations, in-flight locks, cooldowns (the last reboot of each instance), the confirmation key,
follow-ups with their ownership, the outbox, and the audit trail. Each follow-up is owned by one replica
through a lease it renews on every tick; when a replica dies its leases lapse and another replica takes its
follow-ups over. The outbox works the same way: one replica at a time delivers a thread's messages (in order),
under a lease per thread, and a dead replica's pending messages are delivered by another.

The audit trail is one Redis Stream (`dbss-bot:audit`), appended to by every replica and trimmed only past
BOT_AUDIT_RETENTION_DAYS (XTRIM MINID, a batch at a time). Beside each entry, in the same MULTI, go the records the
decisions of bot/core/contract.py read instead of the trail: the instance's last reboot, the latest results (for
`history`), and the set of reboots whose outcome is not told yet (start-up recovery). Each replica also keeps a
copy of the entries it wrote in its own SQLite file (BOT_STATE_PATH), which `python -m bot audit` can export
on its own if the shared trail is ever lost (a Redis without persistence that restarted).

Keys carry a schema version (`dbss-bot:schema`): a Redis written by an earlier version is brought up to date at
start-up (SCHEMA_VERSION, `_migrate`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.core.contract import (
    CLOCK_SKEW_SECONDS,
    ORPHAN_SECONDS,
    OUTBOX_SECONDS,
    RECOVERY_CLAIM_SECONDS,
    RECOVERY_WINDOW_SECONDS,
    TRIM_BATCH,
    USED_CONFIRMATION_SECONDS,
    AuditEntry,
    FollowUp,
    Lock,
    StateUnavailable,
    StoreSize,
    check_followup_updates,
    opens_recovery,
    outcome_key,
    recoverable,
    settles_recovery,
    starts_cooldown,
)
from bot.core.outbox import OutboxMessage, State
from bot.core.store import AUDIT_FIELDS, StateStore

log = logging.getLogger(__name__)

__all__ = ["CLOCK_SKEW_SECONDS", "ORPHAN_SECONDS", "PREFIX", "RedisBackedStore", "SharedTrail"]

AUDIT_STREAM = "audit"
AUDIT_PAGE = 500
PREFIX = "dbss-bot:"  # every key of the shared state starts with this
# Version 1: the last reboot of each instance kept for good (`v1:last-reboot:<id>`), the latest results
# (`v1:reboots`, `v1:reboots:<id>`), the unsettled reboots (`v1:unsettled`); finished follow-ups deleted.
SCHEMA_VERSION = 1
# The cooldown record replicas of version 0 read (`last-reboot:<id>`, a week), still written for a rolling upgrade,
# with the fields AuditEntry had before `region`, which those replicas read as keyword arguments.
LAST_REBOOT_SECONDS = 7 * 24 * 3600
COOLDOWN_FIELDS = AUDIT_FIELDS[:-1]
RESULTS_KEPT = 100  # the latest results kept for `history` (it shows 10)

# Compare-and-delete and compare-and-extend: only the holder may release or extend its lock.
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
EXTEND = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[2]) end "
    "return 0"
)
# Take a follow-up's lease if free, or renew it if it is ours.
LEASE = (
    "local owner = redis.call('GET', KEYS[1]) "
    "if owner == false or owner == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0"
)
# Outbox messages are JSON with `blocks` kept as a JSON string, so Lua's cjson (which turns an empty list
# into an object) never decodes Slack's blocks.
# Insert a message in one step: its ID, its key (kept if taken: then 0), its body, the pending set, and for an
# update the pointer that later updates of the same message fold into.
OUTBOX_INSERT = (
    "local id = redis.call('INCR', KEYS[1]) "
    "if not redis.call('SET', KEYS[2], id, 'NX', 'EX', ARGV[3]) then return 0 end "
    "local m = cjson.decode(ARGV[1]) m['id'] = id "
    "redis.call('SET', ARGV[4] .. id, cjson.encode(m), 'EX', ARGV[3]) "
    "if m['state'] == 'pending' then redis.call('ZADD', KEYS[3], id, id) "
    "if ARGV[2] ~= '' then redis.call('SET', ARGV[2], id, 'EX', ARGV[3]) end end "
    "return id"
)
# Change a pending outbox message only if it is still pending and the version we read (cjson is Redis' own).
OUTBOX_FINISH = (
    "local raw = redis.call('GET', KEYS[1]) if not raw then return 0 end "
    "local m = cjson.decode(raw) if m['state'] ~= 'pending' then return 0 end "
    "if m['version'] ~= tonumber(ARGV[1]) then return 0 end "
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


def redis_client(url: str, *, timeout_seconds: float = 5) -> redis.Redis:
    """The bot's Redis client, whose retry policy is the bot's own: redis-py re-sends nothing.

    A command that timed out may have run (Redis had it and was slow to answer). Sent again it runs again: a claim
    that finds its own first run says "already answered" while nothing was done, and a lock, an outbox insert or an
    audit append happens twice. redis-py's defaults differ by constructor (in 8.x `Redis(...)` retries a timed-out
    command, `Redis.from_url(...)` does not), so the policy is stated here: no retry, on any error (a URL's
    `retry_on_timeout` or `retry_on_error` adds errors to a policy that still retries 0 times). The store turns the
    error into StateUnavailable, and the caller says what is true: not done, or not known (tests/test_redis_retry.py).
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
    )


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as err:
        raise StateUnavailable(f"shared state (Redis): {err}") from err


class SharedTrail:
    """The audit trail every replica appends to and reads: a Redis Stream, in the order Redis received the
    entries. Trimmed only past BOT_AUDIT_RETENTION_DAYS (a compliance record; an entry is a few hundred bytes)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self.key = key

    def append(self, pipe: redis.client.Pipeline, entry: AuditEntry) -> None:
        fields = {name: _stream_value(value) for name, value in asdict(entry).items() if value is not None}
        pipe.xadd(self.key, fields)  # type: ignore[arg-type]

    def entries(self, *, since: float | None = None, newest_first: bool = False) -> Iterator[AuditEntry]:
        """Every entry (received at or after `since`, a Unix time), a page at a time."""
        low = f"{max(0, int(since * 1000))}-0" if since is not None else "-"
        high = "+"
        while True:
            with _redis_errors():
                if newest_first:
                    answer = self._redis.xrevrange(self.key, max=high, min=low, count=AUDIT_PAGE)
                else:
                    answer = self._redis.xrange(self.key, min=low, max=high, count=AUDIT_PAGE)
            page = cast(list[tuple[bytes, dict[bytes, bytes]]], answer)
            for _, fields in page:
                yield _stream_entry(fields)
            if len(page) < AUDIT_PAGE:
                return
            last = "(" + _text(page[-1][0])  # exclusive: the next page starts after it
            high, low = (last, low) if newest_first else (high, last)

    def __len__(self) -> int:
        with _redis_errors():
            return int(self._redis.xlen(self.key))

    def trim(self, before: float, batch: int) -> int:
        """Delete up to `batch` of the oldest entries received before `before` (exact XTRIM MINID up to the last
        one of the batch, so one call never deletes more than a batch)."""
        with _redis_errors():
            page = cast(
                list[tuple[bytes, Any]],
                self._redis.xrange(self.key, min="-", max=f"({int(before * 1000)}-0", count=batch),
            )
            if not page:
                return 0
            ms, _, seq = _text(page[-1][0]).partition("-")
            return int(self._redis.xtrim(self.key, minid=f"{ms}-{int(seq) + 1}", approximate=False))

    def oldest(self) -> float | None:
        with _redis_errors():
            page = cast(list[tuple[bytes, Any]], self._redis.xrange(self.key, min="-", max="+", count=1))
        return int(_text(page[0][0]).partition("-")[0]) / 1000 if page else None


class RedisBackedStore(StateStore):
    """The SQLite store for the local audit trail, with the shared state in Redis."""

    backend = "redis"
    shared = True

    def __init__(
        self,
        path: str | Path,
        *,
        client: redis.Redis,
        prefix: str = PREFIX,
        lease_seconds: float = 30.0,
        outbox_lease_seconds: float = 25.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, clock=clock)
        self._redis = client
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        # A thread's delivery lease is taken for one message and released once it is handled; it outlives the
        # Slack calls of that message, so another replica never takes it over mid-send, and lapses when the
        # replica holding it dies mid-send.
        self._outbox_lease_ms = int(outbox_lease_seconds * 1000)
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        # The name this replica's audit entries carry: kept in its state file, so a restart is the same replica
        # and recovers its own interrupted reboots at once (process names change with every start).
        self.audit_name = self._audit_name()
        self.trail = SharedTrail(client, self.key(AUDIT_STREAM))
        with self._shared():
            client.ping()
        self._migrate_shared()

    def _migrate_shared(self) -> None:
        """Bring the shared keys to SCHEMA_VERSION. From version 0 (no `schema` key, a trail that is not empty):
        the unsettled reboots and latest results of the recovery window are rebuilt from that part of the trail,
        the cooldown records are copied, finished follow-ups are deleted; then, in the background, the last
        reboot of each instance older than that is found in the rest of the trail (once, for `status`)."""
        schema = self.key("schema")
        with self._shared():
            version = self._redis.get(schema)
            if version is not None:
                if int(version) > SCHEMA_VERSION:
                    raise StateUnavailable(
                        f"shared state (Redis): schema version {int(version)} is newer than this bot's {SCHEMA_VERSION}"
                    )
                return
            if not self._redis.exists(self.trail.key):
                self._redis.set(schema, SCHEMA_VERSION, nx=True)
                return
            if not self._redis.set(self.key("migrating"), self.replica, nx=True, ex=600):
                return  # another replica is migrating: its records are written the same way as ours
            now = self._clock()
            pipe = self._redis.pipeline(transaction=False)
            for entry in self.trail.entries(since=now - RECOVERY_WINDOW_SECONDS - CLOCK_SKEW_SECONDS):
                self._append_records(pipe, entry)
            for raw in self._redis.scan_iter(match=self.key("last-reboot", "*"), count=500):
                value = self._redis.get(raw)
                if value:
                    instance_id = _text(raw)[len(self.key("last-reboot", "")) :]
                    pipe.set(self.key("v1", "last-reboot", instance_id), value, nx=True)
            active = {_text(m) for m in self._redis.smembers(self.key("followups"))}
            for raw in self._redis.scan_iter(match=self.key("followup", "*"), count=500):
                if _text(raw)[len(self.key("followup", "")) :] not in active:
                    pipe.delete(raw)
            pipe.set(schema, SCHEMA_VERSION)
            pipe.execute()
        threading.Thread(target=self._backfill_last_reboots, name="redis-migration", daemon=True).start()

    def _backfill_last_reboots(self) -> None:
        try:
            for entry in self.trail.entries(newest_first=True):
                if starts_cooldown(entry.event, entry.outcome) and entry.instance_id:
                    self._redis.set(self.key("v1", "last-reboot", entry.instance_id), _dump_entry(entry), nx=True)
        except Exception:
            log.warning("could not finish finding the last reboots in the shared trail", exc_info=True)

    def _audit_name(self) -> str:
        with self._transaction() as db:
            name = f"{socket.gethostname()}/{secrets.token_hex(3)}"
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('audit_name', ?)", (name.encode(),))
            row = db.execute("SELECT value FROM meta WHERE key = 'audit_name'").fetchone()
        return _text(row[0])

    @classmethod
    def from_url(cls, path: str | Path, url: str, **kwargs: Any) -> RedisBackedStore:
        return cls(path, client=redis_client(url), **kwargs)

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
            self._redis.eval(
                EXTEND,
                1,
                self.key("lock", instance_id),
                _dump(held),
                int(until * 1000),
                _dump(replace(held, expires_at=until)),
            )

    # --- the audit trail, and cooldowns -----------------------------------------------------------------

    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None:
        """The messages go to the shared outbox first, then the entry to the shared trail (with the instance's
        cooldown, for a reboot that may have happened), then to this replica's copy.

        If Redis fails, nothing of the entry was written and StateUnavailable says so: the caller writes the
        messages again (the first ones are kept) and retries the entry, which lands once. If only the local copy
        fails, the entry is in the shared trail, which is the trail in Redis mode: it is logged, not raised, so
        a retry cannot append the entry to the shared trail twice."""
        self.enqueue(announce)
        entry = self._new_entry(event, fields, replica=self.audit_name)
        with self._shared():
            pipe = self._redis.pipeline(transaction=True)
            self.trail.append(pipe, entry)
            self._append_records(pipe, entry)
            if starts_cooldown(entry.event, entry.outcome) and entry.instance_id:
                # The fields AuditEntry had before `replica` and `region`, so replicas of earlier versions read it too.
                cooldown = json.dumps({name: getattr(entry, name) for name in COOLDOWN_FIELDS})
                pipe.set(self.key("last-reboot", entry.instance_id), cooldown, ex=LAST_REBOOT_SECONDS)
            pipe.execute()
        try:
            self._append_local(entry)
        except StateUnavailable:
            log.error(
                "audit entry written to the shared trail but not to this replica's copy",
                exc_info=True,
                extra={"event": event, "correlation_id": entry.correlation_id},
            )

    def _append_records(self, pipe: redis.client.Pipeline, entry: AuditEntry) -> None:
        """What the decisions keep beside an entry: the last reboot, the latest results, the unsettled reboots."""
        if starts_cooldown(entry.event, entry.outcome) and entry.instance_id:
            pipe.set(self.key("v1", "last-reboot", entry.instance_id), _dump_entry(entry))
        if entry.event == "reboot_result":
            for key in (self.key("v1", "reboots"), self.key("v1", "reboots", entry.instance_id or "")):
                pipe.lpush(key, _dump_entry(entry))
                pipe.ltrim(key, 0, RESULTS_KEPT - 1)
        if entry.correlation_id:
            if opens_recovery(entry.event):
                pipe.hset(self.key("v1", "unsettled"), entry.correlation_id, _dump_entry(entry))
            elif settles_recovery(entry.event):
                pipe.hdel(self.key("v1", "unsettled"), entry.correlation_id)

    # --- reading what the trail's records keep ----------------------------------------------------------

    def reboots(self, *, instance_id: str | None = None, limit: int = 10) -> list[AuditEntry]:
        key = self.key("v1", "reboots") if instance_id is None else self.key("v1", "reboots", instance_id)
        with self._shared():
            raws = cast(list[bytes], self._redis.lrange(key, 0, limit - 1))
        return [_load_entry(raw) for raw in raws]

    def last_reboot(self, instance_id: str) -> AuditEntry | None:
        """The instance's last-reboot record (kept for good), else a cooldown key a replica of version 0 wrote."""
        with self._shared():
            raw = self._redis.get(self.key("v1", "last-reboot", instance_id))
            if raw:
                return _load_entry(raw)
            raw = self._redis.get(self.key("last-reboot", instance_id))
        return AuditEntry(**json.loads(raw)) if raw else None

    def audit(self, *, instance_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        for e in self.trail.entries(newest_first=True):
            if instance_id is None or e.instance_id == instance_id:
                found.append(e)
                if len(found) >= limit:
                    break
        return found[::-1]

    def entries(self, *, since: float | None = None, instance_id: str | None = None) -> Iterator[AuditEntry]:
        # The stream is ordered by when Redis received each entry; a replica's clock may be a little behind.
        start = since - CLOCK_SKEW_SECONDS if since is not None else None
        return (
            e
            for e in self.trail.entries(since=start)
            if (since is None or e.at >= since) and (instance_id is None or e.instance_id == instance_id)
        )

    def interrupted(self) -> list[AuditEntry]:
        """Reboots whose outcome never reached a person (the unsettled set, not the trail): this replica's own (an
        earlier start with the same state file), and another replica's once it is ORPHAN_SECONDS old (that
        replica died and did not come back; before then its call may be in flight). Each is claimed in Redis
        before it is returned, so replicas starting together report it once."""
        now = self._clock()
        with self._shared():
            raws = cast(dict[bytes, bytes], self._redis.hgetall(self.key("v1", "unsettled")))
        unsettled = [_load_entry(raw) for raw in raws.values()]
        ours = sorted((e for e in unsettled if recoverable(e, me=self.audit_name, now=now)), key=lambda e: e.at)
        if not ours:
            return []
        found: list[AuditEntry] = []
        with self._shared():
            told = self._redis.mget([self.key("outbox-key", outcome_key(e.correlation_id)) for e in ours])
            for e, said in zip(ours, told, strict=True):
                claim = self.key("recovering", str(e.correlation_id))
                if not said and self._redis.set(claim, self.replica, nx=True, ex=RECOVERY_CLAIM_SECONDS):
                    found.append(e)
        return found

    # --- retention and size -----------------------------------------------------------------------------

    def generation(self) -> str:
        """Read on every card and click; written only when missing (a new or emptied Redis), and then only once."""
        with self._shared():
            value = self._redis.get(self.key("generation"))
            if value is None:
                self._redis.set(self.key("generation"), secrets.token_hex(16), nx=True)
                value = self._redis.get(self.key("generation"))
        return _text(cast(bytes, value))

    def trim(self, now: float, *, audit_retention_days: int, batch: int = TRIM_BATCH) -> int:
        """This replica's copy is trimmed as the SQLite store is; in Redis, claims, messages and follow-up
        outcomes expire by themselves (TTL): what is left is the trail past its retention, and unsettled reboots
        past the recovery window."""
        deleted = super().trim(now, audit_retention_days=audit_retention_days, batch=batch)
        with self._shared():
            raws = cast(dict[bytes, bytes], self._redis.hgetall(self.key("v1", "unsettled")))
            stale = [cid for cid, raw in raws.items() if now - _load_entry(raw).at > RECOVERY_WINDOW_SECONDS]
            if stale:
                deleted += int(self._redis.hdel(self.key("v1", "unsettled"), *stale))
        if audit_retention_days > 0:
            deleted += self.trail.trim(now - audit_retention_days * 86400.0, batch)
        return deleted

    def size(self) -> StoreSize:
        """XLEN, the first entry's ID, ZCARD of the pending set, INFO memory: each O(1)."""
        with self._shared():
            entries = len(self.trail)
            pending = int(self._redis.zcard(self.key("outbox-pending")))
            memory = self._redis.info("memory")
        oldest = self.trail.oldest()
        policy = str(memory.get("maxmemory_policy", "unknown"))
        notes = [f"Redis memory {memory.get('used_memory_human', '?')}", f"maxmemory-policy {policy}"]
        if policy != "noeviction":
            notes.append("maxmemory-policy evicts keys: used confirmations could be forgotten; set noeviction")
        return StoreSize(self.backend, entries, oldest, pending, tuple(notes))

    def forgetful(self) -> list[str]:
        """How this Redis may lose the bot's state, each with its fix; [] when it keeps it. An eviction policy can
        drop a used confirmation (a click could then count again, but for the store's generation: see README) or a
        follow-up; no persistence loses everything at a restart. Unreadable settings are said too."""
        try:
            with self._shared():
                memory = self._redis.info("memory")
                persistence = self._redis.info("persistence")
        except StateUnavailable as err:
            return [f"cannot read its settings ({err})"]
        problems = []
        policy = str(memory.get("maxmemory_policy", "unknown"))
        if policy != "noeviction":
            problems.append(
                f"maxmemory-policy is {policy}: keys can be evicted under memory pressure. Set it to noeviction"
            )
        if not int(persistence.get("aof_enabled", 0)) and not self._saves():
            problems.append("neither AOF nor RDB snapshots are on: a restart of Redis empties it. Turn on appendonly")
        return problems

    def _saves(self) -> bool:
        """Whether RDB snapshots are configured (`save` is not empty)."""
        try:
            with self._shared():
                config = cast(dict[str, str], self._redis.config_get("save"))
        except StateUnavailable:
            return True  # CONFIG may be disabled by the provider: say nothing rather than something false
        return bool(str(config.get("save", "")).strip())

    # --- follow-ups -------------------------------------------------------------------------------------

    def add_followup(self, followup: FollowUp) -> None:
        with self._shared():
            pipe = self._redis.pipeline()
            fields = asdict(followup)
            if fields["target"] is None:  # as the previous version wrote it: its replicas can take it over
                del fields["target"]
            pipe.set(self.key("followup", followup.correlation_id), json.dumps(fields), nx=True)
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
            self._redis.delete(self.key("followup-owner", correlation_id), self.key("followup", correlation_id))
        return True

    def followup_outcome(self, correlation_id: str) -> str | None:
        with self._shared():
            raw = self._redis.get(self.key("followup-outcome", correlation_id))
        return _text(raw) if raw else None

    # --- the outbox -------------------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        now = self._clock()
        with self._shared():
            for m in messages:
                if m.kind == "update" and m.target and m.state == "pending":
                    pending = self._redis.get(self.key("outbox-update", m.target))
                    blocks = json.dumps(m.blocks) if m.blocks is not None else None
                    changes = json.dumps({"text": m.text, "blocks": blocks})
                    if pending and self._redis.eval(OUTBOX_COALESCE, 1, self.key("outbox", _text(pending)), changes):
                        continue
                stored = replace(m, id=0, version=0, created_at=m.created_at or now)
                pointer = self.key("outbox-update", m.target) if m.kind == "update" and m.target else ""
                inserted = self._redis.eval(
                    OUTBOX_INSERT,
                    3,
                    self.key("outbox-seq"),
                    self.key("outbox-key", m.key),
                    self.key("outbox-pending"),
                    _dump_outbox(stored),
                    pointer,
                    OUTBOX_SECONDS,
                    self.key("outbox", ""),
                )
                if not inserted and m.state == "sent":  # sent from memory while the store failed: mark it so
                    number = self._redis.get(self.key("outbox-key", m.key))
                    if number:
                        self._redis.eval(
                            OUTBOX_FINISH.replace("if m['version'] ~= tonumber(ARGV[1]) then return 0 end ", ""),
                            2,
                            self.key("outbox", _text(number)),
                            self.key("outbox-pending"),
                            0,
                            json.dumps({"state": "sent", "ts": m.ts}),
                            _text(number),
                        )

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
                    m = _load_outbox(raw)
                    if m.state == "pending":
                        heads.setdefault(m.group, m)
            due: list[OutboxMessage] = []
            for group, m in heads.items():
                if m.not_before > now or len(due) >= limit:
                    continue
                if not self._redis.eval(LEASE, 1, self.key("outbox-lease", group), self.replica, self._outbox_lease_ms):
                    continue
                # Read again under the lease: the replica that held it may have sent this message and let the lease
                # go between the read above and now; the copy read before would be sent a second time.
                raw = self._redis.get(self.key("outbox", str(m.id)))
                current = _load_outbox(raw) if raw else None
                if current is None or current.state != "pending" or current.version != m.version:
                    self.outbox_release(m)
                    continue
                due.append(current)
        return due

    def outbox_release(self, message: OutboxMessage) -> None:
        """Give a thread's delivery lease back once its message is handled (if this replica still holds it)."""
        with self._shared():
            self._redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                1,
                self.key("outbox-lease", message.group),
                self.replica,
            )

    def outbox_get(self, key: str) -> OutboxMessage | None:
        with self._shared():
            number = self._redis.get(self.key("outbox-key", key))
            raw = self._redis.get(self.key("outbox", _text(number))) if number else None
        return _load_outbox(raw) if raw else None

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
                OUTBOX_FINISH.replace("if m['version'] ~= tonumber(ARGV[1]) then return 0 end ", ""),
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


def _stream_value(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _stream_entry(fields: Mapping[bytes, bytes]) -> AuditEntry:
    values: dict[str, Any] = {name: None for name in AuditEntry.__slots__}
    for raw_name, raw_value in fields.items():
        name = _text(raw_name)
        if name in values:
            values[name] = _text(raw_value)
    values["at"] = float(values["at"] or 0.0)
    return AuditEntry(**values)


def _dump_outbox(m: OutboxMessage) -> str:
    fields = asdict(m)
    fields["blocks"] = json.dumps(m.blocks) if m.blocks is not None else None
    return json.dumps(fields)


def _load_outbox(raw: bytes | str) -> OutboxMessage:
    fields = json.loads(raw)
    if isinstance(fields.get("blocks"), str):
        fields["blocks"] = json.loads(fields["blocks"])
    elif fields.get("blocks") is not None and not isinstance(fields["blocks"], list):
        fields["blocks"] = None
    return OutboxMessage(**fields)


def _dump_entry(entry: AuditEntry) -> str:
    return json.dumps(asdict(entry))


def _load_entry(raw: bytes | str) -> AuditEntry:
    return AuditEntry(**json.loads(raw))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dump(lock: Lock) -> str:
    return json.dumps(asdict(lock), sort_keys=True)
