"""`python -m bench.mute [--seconds N] [--out FILE]`: the soak that once made the bot go mute.

Twenty people reboot at once, for minutes: each sends `/dbss-reboot <id>`, waits for the card, presses Reboot,
and goes on to the next of their own five instances at once (cooldown 0, follow-ups polling every 0.2 s, a reboot
taking 0.5 s, SQLite state, 100 instances). At the end every confirmed card must reach its final line. The
bot runs in HTTP mode (gunicorn) as a separate process against the fake Slack and the DBSS simulator, as in
`python -m bench`.

What it reports: the longest time any card waited after its command was acknowledged (the target: never more
than the acks-first gate's `max_wait`, 2 s, plus the card's own work), and the cards that never came. A lost
wake-up in the gate once held every card after the first hundred or so until the process was stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.__main__ import CHANNEL, PROJECT, ROOT, SECRET, Process, click, command, free_port, pct, render, write
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack, Message

START, END = "<!-- mute:start -->", "<!-- mute:end -->"
SENDERS = 20
INSTANCES = 100
GIVE_UP_SECONDS = 30.0  # a card or an ending this late counts as never come; the requester goes on
# How the card's last line starts once the reboot is over (back to ACTIVE, an alert, not rebooted, outcome unknown);
# "Calling DBSS" (:hourglass:) and "Rebooting" (:arrows_counterclockwise:) are not final.
FINAL = (":white_check_mark:", ":rotating_light:", ":x:", ":warning:")
MENTION = re.compile(r"<@(U\w+)>")


@dataclass
class Seen:
    """What the watcher found in the fake Slack: cards by (requester, instance) with when each was first seen,
    and the response_urls answered (a refusal: the instance is still rebooting)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cards: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)
    hooks: set[str] = field(default_factory=set)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


def watch(slack: FakeSlack, seen: Seen, stop: threading.Event) -> None:
    """Index each new card and response_url answer every 10 ms (one reader, not twenty)."""
    messages = requests = 0
    while not stop.wait(0.01):
        with slack.lock:
            fresh: list[Message] = list(itertools.islice(slack.messages.values(), messages, None))
            received = slack.received[requests:]
        messages += len(fresh)
        requests += len(received)
        now = time.time()
        with seen.changed:
            for m in fresh:
                if m.thread_ts is not None or "asks to reboot" not in m.text:
                    continue
                who = MENTION.search(m.text)
                ids = re.findall(r"[0-9a-f]{32}", json.dumps(m.blocks))
                if who and ids:
                    seen.cards.setdefault((who.group(1), ids[0]), []).append((m.ts, now))
            seen.hooks.update(r.path for r in received if r.path.startswith("/hooks/"))
            if fresh or received:
                seen.changed.notify_all()


@dataclass
class Tally:
    card_waits: list[float] = field(default_factory=list)  # seconds from the ack to the card
    acks: list[float] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)  # the ts of each card confirmed
    lost_cards: int = 0  # commands with neither a card nor a private answer
    unfinished: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def requester(n: int, port: int, slack: FakeSlack, seen: Seen, tally: Tally, until: float) -> None:
    """One on-call engineer: a command, the card, Reboot, and on to the next of their instances at once (one
    still rebooting is refused privately, through the response_url, and that is an answer too)."""
    user = f"U{n:04d}"
    mine = [f"{k:032x}" for k in range(n, INSTANCES, SENDERS)]
    hooks = itertools.count()
    url = f"http://127.0.0.1:{port}/slack/events"
    with httpx.Client(timeout=10) as http:
        for round_ in itertools.count():
            if time.monotonic() >= until:
                return
            iid = mine[round_ % len(mine)]
            hook = f"/hooks/{n}-{next(hooks)}"
            key = (user, iid)
            with seen.lock:
                before = len(seen.cards.get(key, []))
            sent = time.time()
            answer = _post(http, url, command(iid, user, f"{slack.url}{hook}"))
            acked = time.time()
            with seen.changed:
                answered = lambda key=key, before=before, hook=hook: (  # noqa: E731 - a predicate for wait_for
                    len(seen.cards.get(key, [])) > before or hook in seen.hooks
                )
                seen.changed.wait_for(answered, GIVE_UP_SECONDS)
                found = seen.cards.get(key, [])[before:]
                refused = hook in seen.hooks
            with tally.lock:
                tally.acks.append(acked - sent)
                if answer.status_code != 200 or not (found or refused):
                    tally.lost_cards += 1
                if not found:
                    continue
                tally.card_waits.append(max(0.0, found[0][1] - acked))
                tally.cards.append(found[0][0])
            card = slack.messages[(CHANNEL, found[0][0])]
            _post(http, url, click(card, user, f"{slack.url}/hooks/{n}-{next(hooks)}"))


def settle(slack: FakeSlack, tally: Tally) -> None:
    """Wait (at most GIVE_UP_SECONDS) for every confirmed card's final line; count those that never got one."""
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < deadline and not all(_final(slack.messages[(CHANNEL, ts)]) for ts in tally.cards):
        time.sleep(0.2)
    tally.unfinished = sum(not _final(slack.messages[(CHANNEL, ts)]) for ts in tally.cards)


def _final(card: Message) -> bool:
    last = card.blocks[-1] if card.blocks else {}
    text = str((last.get("text") or {}).get("text", "")) if isinstance(last.get("text"), dict) else ""
    return text.startswith(FINAL)


def _post(http: httpx.Client, url: str, body: str) -> httpx.Response:
    """A request signed as Slack signs it."""
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
    }
    return http.post(url, content=body.encode(), headers=headers)


def run(seconds: float, workdir: Path) -> Tally:
    slack = FakeSlack().start()
    dbss = FakeDbss(project_id=PROJECT, reboot_seconds=0.5)
    dbss.start()
    for k in range(INSTANCES):
        dbss.add_instance(f"{k:032x}", f"soak-{k:03d}")
    env = {
        "DBSS_PROJECT_ID": PROJECT,
        "DBSS_ENDPOINT": dbss.url,
        "DBSS_AUTH_TOKEN": "good-token",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": f"{slack.url}/api/",
        "BOT_ALLOWED_USERS": ",".join(f"U{n:04d}" for n in range(SENDERS)),
        "BOT_STATE_PATH": str(workdir / "state.sqlite3"),
        "BOT_POLL_INTERVAL_SECONDS": "0.2",
        "BOT_COOLDOWN_SECONDS": "0",
        "LOG_FORMAT": "json",
    }
    bot = Process(["bot", "http"], env, free_port(), workdir / "bot.log")
    seen, tally, stop = Seen(), Tally(), threading.Event()
    watcher = threading.Thread(target=watch, args=(slack, seen, stop), daemon=True)
    watcher.start()
    until = time.monotonic() + seconds
    people = [threading.Thread(target=requester, args=(n, bot.port, slack, seen, tally, until)) for n in range(SENDERS)]
    try:
        for p in people:
            p.start()
        for p in people:
            p.join()
        settle(slack, tally)
    finally:
        stop.set()
        bot.stop()
        slack.stop()
        dbss.stop()
    return tally


def report(tally: Tally, seconds: float, took: float) -> str:
    waits = tally.card_waits or [0.0]
    rows = [
        ("commands acknowledged", str(len(tally.acks)), ""),
        ("cards posted and confirmed", str(len(tally.cards)), ""),
        ("refused privately (still rebooting)", str(len(tally.acks) - len(tally.cards) - tally.lost_cards), ""),
        ("commands never answered (30 s)", str(tally.lost_cards), "0"),
        ("cards without a final line (30 s)", str(tally.unfinished), "0"),
        ("card after its ack: p50", f"{statistics.median(waits) * 1000:.0f} ms", ""),
        ("card after its ack: p99", f"{pct(waits, 99) * 1000:.0f} ms", ""),
        ("card after its ack: longest", f"{max(waits) * 1000:.0f} ms", "< 2 s + the card's work"),
        ("ack: longest", f"{max(tally.acks or [0.0]) * 1000:.0f} ms", "< 3 s"),
    ]
    return render(rows, command=f"python -m bench.mute --seconds {seconds:g}", seconds=took)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mute", description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the twenty keep rebooting")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dbss-mute-") as tmp:
        tally = run(args.seconds, Path(tmp))
    table = report(tally, args.seconds, time.monotonic() - started)
    print(table)
    write(args.out, table, (START, END))
    return 0 if tally.lost_cards == 0 and tally.unfinished == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
