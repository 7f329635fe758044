"""`python -m bench history [--smoke] [--out FILE]`: what a year of history costs.

1. Command -> card and Confirm -> DBSS call, p50/p99, with 0, 50k, 200k and 1M audit entries already in the store,
   for SQLite and Redis: the bot in this process over HTTP on loopback, against the fake Slack and fake DBSS.
2. Start-up (the store opened, the bot built, recovery's query run) at 0, 4k, 20k and 100k finished reboots, and the
   first start of a state file of main ff24a36 (schema 0) at 100k finished reboots, which migrates it.
3. The bot as its own process through 10k complete reboots (command, card, click, DBSS, follow-up to ACTIVE): its
   RSS and the state file's size, and the non-audit state after the retention windows, at 1k and at 10k.

The history is grown the way the bot writes it: each finished reboot is the entries, messages and claim the bot
wrote for a real one (tests/fixtures/state-ff24a36.sqlite3), with fresh IDs, written through the store's own
append path (`_append`, `_enqueue`; Redis: the stream entry and its records in one pipeline), many to a
transaction so that a million entries take a minute, not an hour. Results go between the markers of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.__main__ import render, rss_pair, write
from bot.core.contract import AuditEntry
from bot.core.outbox import OutboxMessage
from bot.core.redis_state import RedisBackedStore
from bot.core.store import SCHEMA_0, StateStore
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench-history:start -->", "<!-- bench-history:end -->"
PROJECT = "0123456789abcdef0123456789abcdef"
FIXTURE = ROOT / "tests" / "fixtures" / "state-ff24a36.sqlite3"
ENTRIES_PER_REBOOT = 8  # requested, card_posted, confirmed, intent, result, reported, followup_done, reported


@dataclass(frozen=True)
class Scale:
    audit_sizes: tuple[int, ...]
    samples: int
    startup_reboots: tuple[int, ...]
    legacy_reboots: int
    complete_reboots: tuple[int, int]
    lanes: int


FULL = Scale((0, 50_000, 200_000, 1_000_000), 40, (0, 4_000, 20_000, 100_000), 100_000, (1_000, 10_000), 16)
SMOKE = Scale((0, 2_000), 5, (0, 200), 200, (20, 60), 4)


def batched(items: range, size: int) -> Iterator[range]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fresh_id() -> str:
    return secrets.token_hex(16)


# --- one finished reboot, as the bot writes it ---------------------------------------------------------------


def _template() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The audit rows and outbox rows of the fixture's first finished reboot (what the bot wrote for it)."""
    db = sqlite3.connect(FIXTURE)
    cid = db.execute("SELECT correlation_id FROM audit ORDER BY id LIMIT 1").fetchone()[0]
    audit = db.execute(
        "SELECT at, event, user_id, channel, outcome, dbss_request_id, detail, instance_id IS NOT NULL FROM audit "
        "WHERE correlation_id = ? ORDER BY id",
        (cid,),
    ).fetchall()
    outbox = db.execute(
        "SELECT substr(key, length(?) + 1), kind, text, blocks, must_see, broadcast FROM outbox WHERE key LIKE ? "
        "ORDER BY id",
        (cid, cid + ":%"),
    ).fetchall()
    db.close()
    start = audit[0][0]
    return [(row[0] - start, *row[1:]) for row in audit], outbox


TEMPLATE_AUDIT, TEMPLATE_OUTBOX = _template()


def one_reboot(
    at: float, instance_id: str, *, replica: str | None = None
) -> tuple[str, list[AuditEntry], list[OutboxMessage]]:
    """A finished reboot of `instance_id` at `at`, with fresh IDs: its entries and its delivered messages."""
    cid = secrets.token_hex(6)
    thread = f"{int(at)}.{secrets.randbelow(999999):06d}"
    entries = [
        AuditEntry(
            at + offset,
            cid,
            event,
            user,
            instance_id if has_instance else None,
            channel,
            thread if event != "requested" and channel else None,
            (f"{cid}{outcome[12:]}" if event == "outcome_reported" else outcome),
            fresh_id() if request_id else None,
            detail,
            None,
            replica,
        )
        for offset, event, user, channel, outcome, request_id, detail, has_instance in TEMPLATE_AUDIT
    ]
    messages = [
        OutboxMessage(
            key=cid + suffix,
            kind=kind,
            channel="CINCIDENT",
            correlation_id=cid,
            thread_ts=thread,
            text=text,
            blocks=None,
            target=None,
            ts=f"{thread}1",
            must_see=bool(must_see),
            broadcast=bool(broadcast),
            state="sent",
            created_at=at,
        )
        for suffix, kind, text, blocks, must_see, broadcast in TEMPLATE_OUTBOX
    ]
    return cid, entries, messages


def grow(store: StateStore, reboots: int, *, instances: int = 200, until: float | None = None) -> None:
    """`reboots` finished reboots over `instances` instances, the newest `until` (default: an hour ago), spread
    over the year before it."""
    until = until if until is not None else time.time() - 3600
    ids = [fresh_id() for _ in range(instances)]
    step = 365 * 86400 / max(reboots, 1)
    shared = isinstance(store, RedisBackedStore)
    for chunk in batched(range(reboots), 500):
        batch = [one_reboot(until - (reboots - n) * step, ids[n % instances]) for n in chunk]
        with store._transaction() as db:
            for cid, entries, messages in batch:
                for e in entries:
                    store._append(db, e)
                if not shared:
                    store._enqueue(db, messages)
                    db.execute(
                        "INSERT INTO used_confirmations VALUES (?, ?, 'UALICE', 'confirm', ?)",
                        (cid, entries[0].instance_id, entries[0].at),
                    )
        if shared:
            pipe = store._redis.pipeline(transaction=False)
            for _, entries, _ in batch:
                for e in entries:
                    entry = AuditEntry(**_fields(e, store.audit_name))
                    store.trail.append(pipe, entry)
                    store._append_records(pipe, entry)
            pipe.execute()


def _fields(e: AuditEntry, replica: str | None) -> dict[str, Any]:
    return {name: getattr(e, name) for name in AuditEntry.__slots__} | {"replica": replica}


# --- the bot in this process ------------------------------------------------------------------------------


@contextmanager
def bot_in_process(work: Path, dbss: FakeDbss, slack: FakeSlack, **overrides: Any) -> Iterator[Any]:
    from tests.harness import Harness

    h = Harness(work, dbss, slack, bot_poll_interval_seconds=0.2, bot_cooldown_seconds=300, **overrides)
    try:
        yield h
    finally:
        h.stop()


def wait(check: Callable[[], bool], timeout: float = 30.0, slack: FakeSlack | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            said = f": it said {slack.hook_texts()[-3:]}" if slack is not None else ""
            raise TimeoutError("the bot did not answer in time" + said)
        time.sleep(0.001)


def instances(dbss: FakeDbss, count: int) -> list[tuple[str, str]]:
    """Instances never rebooted, known to DBSS before the bot starts (it lists them once, then on its schedule)."""
    made = []
    for _ in range(count):
        iid = fresh_id()
        dbss.add_instance(iid, f"bench-{iid[:12]}")
        made.append((iid, f"bench-{iid[:12]}"))
    return made


def latencies(h: Any, dbss: FakeDbss, slack: FakeSlack, ids: list[tuple[str, str]]) -> tuple[list[float], list[float]]:
    """Command -> card and Confirm -> DBSS call, each instance rebooted once (the cooldown check reads its last
    reboot, which the grown history does not have: the look-up old versions answered by reading the trail)."""
    card_times: list[float] = []
    confirm_times: list[float] = []
    for iid, name in ids:
        before = len(slack.messages)
        started = time.perf_counter()
        h.command(iid)
        wait(
            lambda before=before, name=name: (
                len(slack.messages) > before and any(name in m.text for m in list(slack.messages.values())[before:])
            ),
            slack=slack,
        )
        card_times.append(time.perf_counter() - started)
        card = next(m for m in reversed(list(slack.messages.values())) if name in m.text and m.thread_ts is None)
        calls = len(dbss.reboot_requests())
        started = time.perf_counter()
        h.click("dbss_reboot_confirm", card=card)
        wait(lambda calls=calls: len(dbss.reboot_requests()) > calls)
        confirm_times.append(time.perf_counter() - started)
    return card_times, confirm_times


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


class RedisServer:
    def __init__(self, directory: Path) -> None:
        from tests.conftest import RedisServer as Server

        self.server = Server(directory)
        self.server.start()
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()


# --- the measurements ---------------------------------------------------------------------------------------


class HistoryBench:
    def __init__(self, scale: Scale, work: Path) -> None:
        self.scale = scale
        self.work = work
        self.rows: list[tuple[str, str, str]] = []

    def row(self, measure: str, result: str, target: str = "") -> None:
        self.rows.append((measure, result, target))
        print(f"{measure}: {result}", flush=True)

    def requests(self, backend: str) -> None:
        directory = self.work / f"requests-{backend}"
        directory.mkdir()
        redis = RedisServer(directory) if backend == "redis" else None
        overrides = {"redis_url": redis.url} if redis else {}
        state = directory / "state.sqlite3"
        grown = 0
        empty_p50: tuple[float, float] | None = None
        try:
            for size in self.scale.audit_sizes:
                reboots = (size - grown) // ENTRIES_PER_REBOOT
                store = (
                    RedisBackedStore.from_url(state, redis.url) if redis else StateStore(state)  # type: ignore[union-attr]
                )
                started = time.monotonic()
                grow(store, reboots)
                grown += reboots * ENTRIES_PER_REBOOT
                store.close()
                took = time.monotonic() - started
                with FakeDbss(project_id=PROJECT) as dbss, FakeSlack() as slack:
                    dbss.reboot_polls = 0
                    ids = instances(dbss, 3 + self.scale.samples)
                    with bot_in_process(directory, dbss, slack, bot_state_path=str(state), **overrides) as h:
                        latencies(h, dbss, slack, ids[:3])  # warm-up
                        cards, confirms = latencies(h, dbss, slack, ids[3:])
                p50s = (statistics.median(cards), statistics.median(confirms))
                empty_p50 = empty_p50 or p50s
                target = "" if size == 0 else f"p50 <= {ms(empty_p50[0] + 0.010)} / {ms(empty_p50[1] + 0.010)}"
                self.row(
                    f"{backend}: command -> card / Confirm -> DBSS, p50 (p99), {size:,} audit entries",
                    f"{ms(p50s[0])} ({ms(pct(cards, 99))}) / {ms(p50s[1])} ({ms(pct(confirms, 99))}); "
                    f"history grown in {took:.0f} s",
                    target,
                )
        finally:
            if redis:
                redis.stop()

    def startup(self) -> None:
        for reboots in self.scale.startup_reboots:
            directory = self.work / f"startup-{reboots}"
            directory.mkdir()
            state = directory / "state.sqlite3"
            store = StateStore(state)
            grow(store, reboots)
            store.record("reboot_intent", correlation_id="died", user_id="UALICE", instance_id=fresh_id())
            store.close()
            self.row(
                f"start-up, {reboots:,} finished reboots ({reboots * ENTRIES_PER_REBOOT:,} entries)",
                self._start(directory, state),
                "< 2 s",
            )
        reboots = self.scale.legacy_reboots
        directory = self.work / "startup-legacy"
        directory.mkdir()
        state = directory / "state.sqlite3"
        legacy(state, reboots)
        self.row(
            f"first start of a main ff24a36 file (schema 0, migrated), {reboots:,} finished reboots",
            self._start(directory, state),
            "once",
        )

    def _start(self, directory: Path, state: Path) -> str:
        """Open the store (the migration, if any, included) and run recovery's query, then build the whole bot on it
        (which opens it again and recovers in the background)."""
        with FakeDbss(project_id=PROJECT) as dbss, FakeSlack() as slack:
            started = time.perf_counter()
            store = StateStore(state)
            opened = time.perf_counter() - started
            begun = time.perf_counter()
            found = store.interrupted()
            recovery = time.perf_counter() - begun
            store.close()
            begun = time.perf_counter()
            with bot_in_process(directory, dbss, slack, bot_state_path=str(state)):
                built = time.perf_counter() - begun
        total = opened + recovery + built
        return (
            f"{total:.2f} s (store opened {opened:.2f} s, recovery {ms(recovery)} finding {len(found)} unfinished, "
            f"bot built {built:.2f} s)"
        )

    def complete_reboots(self) -> None:
        """The bot as a process through complete reboots; RSS, file size, and state after the retention windows."""
        from tests.processes import BotProcess, bot_env, command_body, confirm_body

        directory = self.work / "complete"
        directory.mkdir()
        state = directory / "state.sqlite3"
        checkpoints = self.scale.complete_reboots
        lanes = self.scale.lanes
        with FakeDbss(project_id=PROJECT) as dbss, CardSlack() as slack:
            dbss.reboot_polls = 0
            ids = [fresh_id() for _ in range(lanes)]
            for n, iid in enumerate(ids):
                dbss.add_instance(iid, f"lane-{n}")
            env = bot_env(dbss, slack, state, BOT_POLL_INTERVAL_SECONDS="0.05", BOT_COOLDOWN_SECONDS="0")
            bot = BotProcess(env, directory)
            done = [0]
            commands = [0]
            lock = threading.Lock()
            failures: list[BaseException] = []

            def lane(n: int, iid: str) -> None:
                channel = f"CLANE{n:02d}"
                try:
                    while True:
                        with lock:
                            if done[0] >= checkpoints[-1]:
                                return
                        card = None
                        while card is None:  # refused only if the previous reboot's lock outlived its end message
                            slack.forget_cards(channel)
                            bot.post(command_body(slack, iid).replace("CINCIDENT", channel))
                            with lock:
                                commands[0] += 1
                            card = slack.next_card(channel, timeout=10.0)
                        bot.post(confirm_body(slack, card).replace("CINCIDENT", channel))
                        if not slack.wait_end(channel, timeout=30):
                            raise TimeoutError(f"no end of the follow-up in {channel}")
                        with lock:
                            done[0] += 1
                except BaseException as err:
                    failures.append(err)
                    raise

            threads = [threading.Thread(target=lane, args=(n, iid), daemon=True) for n, iid in enumerate(ids)]
            started = time.monotonic()
            for t in threads:
                t.start()
            measured: list[tuple[int, int, int]] = []
            for checkpoint in checkpoints:
                # Measured as the lanes go on (at most one reboot per lane in flight), except after the last one.
                wait(lambda checkpoint=checkpoint: done[0] >= checkpoint or bool(failures), timeout=3600)
                if failures:
                    raise RuntimeError("a lane failed") from failures[0]
                if checkpoint == checkpoints[-1]:
                    for t in threads:
                        t.join(timeout=60)
                    time.sleep(1.5)  # the last follow-ups' messages are sent
                _, worker = rss_pair(bot.proc.pid)
                measured.append((done[0], worker, state.stat().st_size))
            took = time.monotonic() - started
            bot.terminate()
        (first, rss1, size1), (last, rss2, size2) = measured[0], measured[-1]
        self.row(
            f"bot RSS after {first:,} and {last:,} complete reboots ({lanes} at a time)",
            f"{rss1 / 1024:.1f} MB, {rss2 / 1024:.1f} MB (growth {(rss2 - rss1) / 1024:+.1f} MB); "
            f"{commands[0]:,} commands in {took:.0f} s",
            "growth < 5 MB",
        )
        self.row(
            f"state file after {first:,} and {last:,} complete reboots (not counting its WAL)",
            f"{size1 / 1e6:.1f} MB, {size2 / 1e6:.1f} MB",
        )
        store = StateStore(state)
        audit = len(list(store.entries()))
        future = time.time() + 8 * 86400  # past every window but the audit trail's (400 days)
        while store.trim(future, audit_retention_days=400):
            pass
        store.close()
        self.row(
            f"non-audit state after the retention windows, {last:,} reboots over {lanes} instances",
            ", ".join(f"{table} {n}" for table, n in non_audit(state).items()) + f"; audit entries kept {audit:,}",
            f"flat: O(instances) = {lanes} last reboots",
        )

    def run(self) -> None:
        for backend in ("sqlite", "redis"):
            self.requests(backend)
        self.startup()
        self.complete_reboots()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def non_audit(state: Path) -> dict[str, int]:
    db = sqlite3.connect(state)
    try:
        tables = ("used_confirmations", "locks", "followups", "outbox", "unsettled", "last_reboots")
        return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}  # noqa: S608
    finally:
        db.close()


def legacy(state: Path, reboots: int) -> None:
    """A state file as main ff24a36 left it after `reboots` finished reboots (schema 0, every row kept)."""
    db = sqlite3.connect(state, isolation_level=None)
    db.executescript(SCHEMA_0)
    ids = [fresh_id() for _ in range(200)]
    until = time.time() - 3600
    step = 365 * 86400 / max(reboots, 1)
    for chunk in batched(range(reboots), 1000):
        db.execute("BEGIN")
        for n in chunk:
            cid, entries, messages = one_reboot(until - (reboots - n) * step, ids[n % len(ids)])
            db.executemany(
                "INSERT INTO audit (at, correlation_id, event, user_id, instance_id, channel, thread_ts, outcome, "
                "dbss_request_id, detail, region) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [tuple(getattr(e, f) for f in AuditEntry.__slots__[:-1]) for e in entries],
            )
            db.executemany(
                "INSERT INTO outbox (key, grp, kind, channel, correlation_id, thread_ts, text, blocks, target, ts, "
                "broadcast, must_see, recipient, version, state, attempts, not_before, uncertain, detail, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, NULL, 0, 'sent', 1, 0, 0, NULL, ?)",
                [
                    (
                        m.key,
                        m.group,
                        m.kind,
                        m.channel,
                        cid,
                        m.thread_ts,
                        m.text,
                        m.ts,
                        m.broadcast,
                        m.must_see,
                        m.created_at,
                    )
                    for m in messages
                ],
            )
            at = entries[0].at
            db.execute(
                "INSERT INTO followups (correlation_id, instance_id, requester, approver, channel, thread_ts, "
                "started_at, deadline, done_at, outcome) "
                "VALUES (?, ?, 'UALICE', 'UALICE', 'CINCIDENT', '1.1', ?, ?, ?, 'healthy')",
                (cid, entries[0].instance_id, at, at + 600, at + 60),
            )
            db.execute("INSERT INTO used_confirmations VALUES (?, ?, 'UALICE', 'confirm', ?)", (cid, ids[0], at))
        db.execute("COMMIT")
    db.close()


class CardSlack(FakeSlack):
    """The fake Slack Web API, which also hands each new card to whoever waits for its channel."""

    def __init__(self) -> None:
        super().__init__()
        self._cards: dict[str, list[Any]] = {}
        self._ends: dict[str, int] = {}
        self._posted = threading.Condition()

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        answer = super()._chat_postMessage(args)
        if answer.get("ok") and not args.get("thread_ts") and "asks to reboot" in str(args.get("text", "")):
            with self._posted:
                self._cards.setdefault(str(args.get("channel")), []).append(
                    self.messages[(answer["channel"], answer["ts"])]
                )
                self._posted.notify_all()
        return answer

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        answer = super()._chat_update(args)
        if str(args.get("text", "")).startswith(":white_check_mark:"):  # back to ACTIVE (seen rebooting or not)
            with self._posted:
                self._ends[str(args.get("channel"))] = self._ends.get(str(args.get("channel")), 0) + 1
                self._posted.notify_all()
        return answer

    def wait_end(self, channel: str, timeout: float) -> bool:
        """A card's end (its last update: back to ACTIVE) since the last call for this channel."""
        with self._posted:
            if self._posted.wait_for(lambda: self._ends.get(channel, 0) > 0, timeout):
                self._ends[channel] -= 1
                return True
        return False

    def forget_cards(self, channel: str) -> None:
        with self._posted:
            self._cards.pop(channel, None)

    def next_card(self, channel: str, timeout: float) -> Any:
        with self._posted:
            if self._posted.wait_for(lambda: bool(self._cards.get(channel)), timeout):
                return self._cards[channel].pop(0)
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench history", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a seconds-long version (used by the tests)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--only", choices=("requests", "startup", "complete"), help="one part only")
    args = parser.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dbss-history-"))
    bench = HistoryBench(SMOKE if args.smoke else FULL, work)
    try:
        if args.only == "requests":
            for backend in ("sqlite", "redis"):
                bench.requests(backend)
        elif args.only == "startup":
            bench.startup()
        elif args.only == "complete":
            bench.complete_reboots()
        else:
            bench.run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = (
        "python -m bench history" + (" --smoke" if args.smoke else "") + (f" --only {args.only}" if args.only else "")
    )
    write(args.out, render(bench.rows, command=command, seconds=time.monotonic() - started), (START, END))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
