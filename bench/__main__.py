"""`python -m bench [--smoke] [--out FILE]`: the incident-storm benchmark.

Starts the fake Slack and fake DBSS + IAM on loopback in this process, the bot in HTTP mode (gunicorn) as a
separate process, and drives it with correctly signed requests from 20 concurrent senders. Writes a results
table between the markers of docs/benchmarks.md (or --out). --smoke is a seconds-long version for the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.load import blast_in_process, build_request
from bot.core.store import FollowUp, StateStore
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-signing-secret-0123456789abcdef"
PROJECT = "0123456789abcdef0123456789abcdef"
CHANNEL = "CSTORM"
REGIONS = (
    ("cn-north-4", "0f3b0000000000000000000000000001"),
    ("ap-southeast-1", "9c1d0000000000000000000000000002"),
    ("eu-west-0", "77770000000000000000000000000003"),
)
BENCH_AK, BENCH_SK = "AKBENCH000000000000", "bench-secret-key-0123456789abcdef"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# The server under test (the bot, or the bare baseline) gets core 0 to itself; this process (the fakes) and
# the load generator share core 1. Otherwise the fakes' work during a storm (serving a thousand card posts)
# would be charged to the bot, and not to the idle baseline.
CORES = sorted(os.sched_getaffinity(0))
SERVER_CPU_PREFIX = ["taskset", "-c", str(CORES[0])] if len(CORES) >= 2 and shutil.which("taskset") else []


@dataclass(frozen=True)
class Scale:
    commands: int
    senders: int
    followups: int
    latency: float
    card_commands: int
    iam_reboots: int
    poll_interval: float
    quiet_window: float
    idle_instances: int
    card_rate: int


FULL = Scale(1000, 20, 200, 1.0, 200, 200, 2.0, 10.0, 400, 20)
SMOKE = Scale(60, 4, 10, 0.05, 10, 10, 0.2, 1.0, 40, 20)


# --- processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_pair(pid: int) -> tuple[int, int]:
    """Resident memory in KiB of gunicorn's master and of its worker (the bot itself)."""
    children: list[str] = []
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return rss_kib(pid), sum(rss_kib(int(c)) for c in children)


class Process:
    """A server process started with `python -m <module>`, stopped with SIGTERM."""

    def __init__(self, module: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self._log = log.open("w")
        base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "PORT": str(port)}
        self.proc = subprocess.Popen(
            [*SERVER_CPU_PREFIX, sys.executable, "-m", *module],
            env={**base, **env},
            cwd=log.parent,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as http:
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{module} did not start; see {log}")
                time.sleep(0.05)

    def rss(self) -> tuple[int, int]:
        return rss_pair(self.proc.pid)

    def _signal_all(self, signum: int) -> None:
        children: list[str] = []
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        for pid in [self.proc.pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    @contextlib.contextmanager
    def paused(self) -> Any:
        """SIGSTOP gunicorn's master and worker for the duration: no CPU at all, not even background work."""
        self._signal_all(signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal_all(signal.SIGCONT)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


# --- load --------------------------------------------------------------------------------------------------


@dataclass
class Sent:
    key: str
    sent_at: float
    latency: float
    status: int


def send_all(port: int, bodies: list[tuple[str, str]], senders: int, pace: float = 0.0) -> list[Sent]:
    """POST every (key, body) to /slack/events, signed, from `senders` connections in a separate process."""
    now = int(time.time())
    requests = [build_request(port, body, SECRET, now) for _, body in bodies]
    # The fakes keep every request they saw; move them out of the collector's reach, so that a full
    # collection in this process (hundreds of ms late in a run) does not delay the fakes' answers.
    gc.collect()
    gc.freeze()
    return [
        Sent(bodies[index][0], sent_at, latency, status)
        for index, sent_at, latency, status in blast_in_process(port, requests, senders, pace)
    ]


def command(instance_id: str, user: str, hook: str) -> str:
    return urlencode(
        {
            "command": "/dbss-reboot",
            "text": instance_id,
            "user_id": user,
            "user_name": user.lower(),
            "channel_id": CHANNEL,
            "channel_name": "storm",
            "team_id": "T1",
            "api_app_id": "A1",
            "response_url": hook,
            "trigger_id": "1.2.3",
        }
    )


def click(card: Any, user: str, hook: str) -> str:
    value = next(
        e["value"] for b in card.blocks for e in b.get("elements", []) if e.get("action_id") == "dbss_reboot_confirm"
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": card.ts, "channel_id": CHANNEL},
        "message": {"ts": card.ts, "text": card.text, "blocks": card.blocks},
        "response_url": hook,
        "actions": [{"action_id": "dbss_reboot_confirm", "block_id": "dbss_reboot_actions", "value": value}],
    }
    return urlencode({"payload": json.dumps(payload)})


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def wait_until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def cards(slack: FakeSlack) -> list[Any]:
    with slack.lock:
        return [m for m in slack.messages.values() if m.thread_ts is None and "asks to reboot" in m.text]


# --- the benchmark -----------------------------------------------------------------------------------------


class Bench:
    def __init__(self, scale: Scale, workdir: Path, *, soak: int = 0) -> None:
        self.scale = scale
        self.soak = soak
        self.workdir = workdir
        self.rows: list[tuple[str, str, str]] = []
        self.slack = FakeSlack().start()
        self.dbss = FakeDbss(project_id=PROJECT, iam_users={("acme", "bench"): "bench-password"})
        self.dbss.start()
        self.users = [f"U{n:04d}" for n in range(scale.senders)]
        self.followed = [f"f{n:031x}" for n in range(scale.followups)]
        self.idle = [f"a{n:031x}" for n in range(scale.idle_instances)]
        for iid in self.followed:
            self.dbss.add_instance(iid, f"followed-{iid[-4:]}", task="rebooting").rebooting_polls_left = 10**9
        for iid in self.idle:
            self.dbss.add_instance(iid, f"idle-{iid[-4:]}")
        self._hooks = itertools.count()

    def close(self) -> None:
        self.slack.stop()
        self.dbss.stop()

    def row(self, measure: str, result: str, target: str = "") -> None:
        self.rows.append((measure, result, target))
        print(f"{measure}: {result}", flush=True)

    def hook(self) -> str:
        return f"{self.slack.url}/hooks/{next(self._hooks)}"

    def env(self, state: Path, **extra: str) -> dict[str, str]:
        return {
            "DBSS_PROJECT_ID": PROJECT,
            "DBSS_ENDPOINT": self.dbss.url,
            "DBSS_AUTH_TOKEN": "good-token",
            "DBSS_TIMEOUT_SECONDS": "10",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": f"{self.slack.url}/api/",
            "BOT_ALLOWED_USERS": ",".join(self.users),
            "BOT_STATE_PATH": str(state),
            "BOT_POLL_INTERVAL_SECONDS": str(self.scale.poll_interval),
            "BOT_COOLDOWN_SECONDS": "0",
            "LOG_FORMAT": "json",
            **extra,
        }

    def storm_bodies(self) -> list[tuple[str, str]]:
        return [
            (str(n), command(self.idle[n % len(self.idle)], self.users[n % len(self.users)], self.hook()))
            for n in range(self.scale.commands)
        ]

    def set_latency(self, seconds: float) -> None:
        """Change the fake DBSS's answer delay, then wait until no call made under the old one is in flight:
        a card that joins a list call made before the change would be charged the old delay."""
        previous = max(self.dbss.delays.get(route, 0.0) for route in ("reboot", "list", "iam"))
        for route in ("reboot", "list", "iam"):
            self.dbss.delays[route] = seconds
        time.sleep(previous + 0.1 if previous > seconds else 0.0)

    def card_round(self, port: int, pace: float) -> list[float]:
        """Seconds from each command to its card arriving at the fake Slack."""
        chosen = self.idle[: self.scale.card_commands]
        seen = {m.ts for m in cards(self.slack)}
        bodies = [(iid, command(iid, self.users[n % len(self.users)], self.hook())) for n, iid in enumerate(chosen)]
        started = time.time()
        sent = {x.key: x for x in send_all(port, bodies, self.scale.senders, pace)}
        wait_until(lambda: len({m.ts for m in cards(self.slack)} - seen) >= len(chosen), 120)
        arrivals = {}
        for r in self.slack.requests_to("/api/chat.postMessage"):
            fields = (r.json or {}).get("blocks", [{}, {}])[1].get("fields") if r.at >= started else None
            if fields:
                arrivals[fields[1]["text"].split("`")[1]] = r.at
        return [arrivals[k] - v.sent_at for k, v in sent.items() if k in arrivals]

    def bare(self, variant: str) -> Process:
        """A bare Bolt app (bench/bare.py), started and warmed up like the bot."""
        proc = Process(
            ["bench.bare", variant],
            self.env(self.workdir / "unused.sqlite3"),
            free_port(),
            self.workdir / f"bare-{variant}.log",
        )
        send_all(proc.port, self.storm_bodies()[: max(20, self.scale.commands // 5)], self.scale.senders)
        return proc

    def storm_latencies(self, port: int) -> list[float]:
        return [x.latency for x in send_all(port, self.storm_bodies(), self.scale.senders)]

    def storm_until_carded(self, port: int) -> tuple[list[Sent], float]:
        """A storm at the bot, then wait for all its cards: the acks, and seconds until the last card."""
        count_before = len(cards(self.slack))
        started = time.monotonic()
        sent = send_all(port, self.storm_bodies(), self.scale.senders)
        done = wait_until(lambda: len(cards(self.slack)) >= count_before + self.scale.commands, 240)
        return sent, time.monotonic() - started if done else float("nan")

    def several_targets(self) -> dict[str, float]:
        """A bot with DBSS_TARGETS of three regions (each its own simulator endpoint and project, one AK/SK) and
        reboots followed in each: list calls per poll interval, per region, in a quiet window."""
        s = self.scale
        north = FakeDbss(project_id=REGIONS[0][1], region=REGIONS[0][0], aksk={BENCH_AK: BENCH_SK})
        fakes = [north] + [FakeDbss(project_id=p, region=r, cloud=north.cloud) for r, p in REGIONS[1:]]
        state = self.workdir / "regions.sqlite3"
        store = StateStore(state)
        now = time.time()
        for fake, (region, project) in zip(fakes, REGIONS, strict=True):
            fake.start()
            for n in range(s.followups // len(REGIONS)):
                iid = f"{project[:8]}{n:024x}"
                fake.add_instance(iid, f"followed-{n}", task="rebooting").rebooting_polls_left = 10**9
                store.add_followup(
                    FollowUp(
                        f"{region}-{n}",
                        iid,
                        self.users[0],
                        self.users[0],
                        CHANNEL,
                        f"2.{n}",
                        now,
                        now + 3600,
                        target=f"{region}:{project}",
                    )
                )
        store.close()
        env = self.env(
            state,
            DBSS_TARGETS=",".join(f"{r}:{p}@{f.url}" for f, (r, p) in zip(fakes, REGIONS, strict=True)),
            DBSS_AK=BENCH_AK,
            DBSS_SK=BENCH_SK,
        )
        for name in ("DBSS_PROJECT_ID", "DBSS_ENDPOINT", "DBSS_AUTH_TOKEN"):
            env.pop(name)
        bot = Process(["bot", "http"], env, free_port(), self.workdir / "regions-bot.log")
        try:
            time.sleep(s.poll_interval * 1.5)
            before = [len(f.list_requests()) for f in fakes]
            time.sleep(s.quiet_window)
            after = [len(f.list_requests()) for f in fakes]
        finally:
            bot.stop()
            for fake in fakes:
                fake.stop()
        intervals = s.quiet_window / s.poll_interval
        return {region: (a - b) / intervals for (region, _), a, b in zip(REGIONS, after, before, strict=True)}

    def run(self) -> None:
        s = self.scale
        # 1. Baselines: bare Bolt with its defaults, and bare Bolt answering on the request thread (as the bot
        #    does). Their storms alternate with the bot's, the bot stopped meanwhile, so all three see the same
        #    machine: this machine's speed drifts by tens of percent over a minute.
        with contextlib.ExitStack() as servers:
            bare_default_proc = self.bare("default")
            servers.callback(bare_default_proc.stop)
            bare_proc = self.bare("before")
            servers.callback(bare_proc.stop)
            bare: list[float] = []
            bare_before: list[float] = []

            # 2. The bot, with 200 reboots being followed (seeded in its state store, as after a restart).
            state = self.workdir / "state.sqlite3"
            store = StateStore(state)
            now = time.time()
            for n, iid in enumerate(self.followed):
                store.add_followup(
                    FollowUp(f"seed{n}", iid, self.users[0], self.users[0], CHANNEL, f"1.{n}", now, now + 3600)
                )
            store.close()
            self.set_latency(s.latency)
            bot = Process(["bot", "http"], self.env(state), free_port(), self.workdir / "bot.log")
            try:
                rss_start = bot.rss()
                # 3. List calls per poll interval, in a quiet window.
                time.sleep(s.poll_interval * 1.5)
                before = len(self.dbss.list_requests())
                time.sleep(s.quiet_window)
                per_interval = (len(self.dbss.list_requests()) - before) / (s.quiet_window / s.poll_interval)

                # 4. A warm-up burst (not measured: first requests pay for lazy imports and caches), then two
                #    identical storms; ack latency and memory after each.
                warm = len(cards(self.slack))
                send_all(bot.port, self.storm_bodies()[: max(20, s.commands // 5)], s.senders)
                wait_until(lambda: len(cards(self.slack)) >= warm + max(20, s.commands // 5), 120)
                acks: list[list[Sent]] = []
                rss_after: list[tuple[int, int]] = []
                drains: list[float] = []
                for _ in range(2):
                    with bot.paused():  # the bot's follow-ups take no CPU while the baselines are measured
                        bare += self.storm_latencies(bare_default_proc.port)
                        bare_before += self.storm_latencies(bare_proc.port)
                    lists_before = len(self.dbss.list_requests())
                    sent, drain = self.storm_until_carded(bot.port)
                    acks.append(sent)
                    drains.append(drain)
                    storm_lists = len(self.dbss.list_requests()) - lists_before
                    rss_after.append(bot.rss())

                # 4b. --soak N: N more storms, the bot's RSS after each (does it level off?).
                soak_rss: list[int] = []
                for _ in range(self.soak):
                    self.storm_until_carded(bot.port)
                    soak_rss.append(bot.rss()[1])

                # 5. Card latency at list latency 0 and 1 s, commands paced at an incident rate and in one
                #    burst. Distinct instances, so each card is matched to its command.
                card_latency: dict[tuple[str, float], list[float]] = {}
                for mode, pace in (("paced", 1 / s.card_rate), ("burst", 0.0)):
                    for latency in (0.0, s.latency):
                        self.set_latency(latency)
                        card_latency[(mode, latency)] = self.card_round(bot.port, pace)
            finally:
                code = bot.stop()

        # 6. IAM mode: 200 concurrent reboots, how many logins.
        logins_before = self.dbss.logins
        self.set_latency(0.05 if s is FULL else 0.0)
        iam_env = self.env(
            self.workdir / "iam.sqlite3",
            DBSS_IAM_DOMAIN="acme",
            DBSS_IAM_USER="bench",
            DBSS_IAM_PASSWORD="bench-password",
            DBSS_IAM_ENDPOINT=self.dbss.url,
        )
        iam_env.pop("DBSS_AUTH_TOKEN")
        iam_bot = Process(["bot", "http"], iam_env, free_port(), self.workdir / "iam-bot.log")
        try:
            targets = self.idle[-s.iam_reboots :]
            seen_before_iam = {m.ts for m in cards(self.slack)}
            bodies = [(iid, command(iid, self.users[0], self.hook())) for iid in targets]
            send_all(iam_bot.port, bodies, s.senders)
            wait_until(lambda: len({m.ts for m in cards(self.slack)} - seen_before_iam) >= len(targets), 120)
            new_cards = [m for m in cards(self.slack) if m.ts not in seen_before_iam]
            reboots_before = len(self.dbss.reboots_done)
            send_all(iam_bot.port, [(c.ts, click(c, self.users[0], self.hook())) for c in new_cards], s.senders)
            wait_until(lambda: len(self.dbss.reboots_done) - reboots_before >= len(new_cards), 120)
            iam_reboots = len(self.dbss.reboots_done) - reboots_before
        finally:
            iam_bot.stop()
        logins = self.dbss.logins - logins_before

        # 7. Several targets: follow-ups in three regions, one list call per interval per region.
        per_target = self.several_targets()

        # The table.
        all_acks = [x for run in acks for x in run]
        first, second = ([x.latency for x in run] for run in acks)
        late = sum(1 for x in all_acks if x.latency >= 3.0 or x.status != 200)
        p50_bot = statistics.median(first + second)
        load = f"{s.commands} commands, {s.senders} senders, {s.followups} followed, DBSS {s.latency:g} s"
        self.row(f"ack latency, bot under storm, run 1 ({load})", spread(first), "p99 < 50 ms")
        self.row("ack latency, bot under storm, run 2", spread(second), "p99 < 50 ms")
        self.row("late or failed acks (>= 3 s or not 200), both runs", f"{late} of {len(all_acks)}", "0")
        self.row(
            "ack latency, bare Bolt app (Bolt's defaults), idle, its 2 storms alternating with the bot's", spread(bare)
        )
        self.row(
            "ack latency, bare Bolt app (process_before_response=True), idle, its 2 storms alternating with the bot's",
            spread(bare_before),
        )
        self.row(
            "ratio of p50s: bot under storm (both runs) / bare Bolt (defaults)",
            f"{p50_bot / statistics.median(bare):.2f}",
            "<= 1.0",
        )
        self.row(
            "ratio of p50s: bot under storm (both runs) / bare Bolt (process_before_response)",
            f"{p50_bot / statistics.median(bare_before):.2f}",
            "<= 1.0",
        )
        for (mode, latency), values in card_latency.items():
            how = f"{s.card_rate} commands/s" if mode == "paced" else "all at once"
            self.row(
                f"card latency, {s.card_commands} commands {how}, DBSS list latency {latency:g} s",
                f"{spread(values, with_max=False)} ({len(values)} cards)" if values else "no cards",
                f"p99 < {ms(0.2 + latency)}" if mode == "paced" else "",
            )
        self.row("storm: time until all its cards were posted (run 1, run 2)", ", ".join(f"{d:.1f} s" for d in drains))
        self.row("storm: DBSS list calls to post the cards of run 2", str(storm_lists))
        self.row(f"DBSS list calls per poll interval ({s.followups} followed, quiet)", f"{per_interval:.2f}", "1")
        self.row(f"IAM logins for {iam_reboots} concurrent reboots", str(logins), "1")
        followed_each = s.followups // len(REGIONS)
        self.row(
            f"DBSS list calls per poll interval per target ({len(REGIONS)} targets, {followed_each} followed in each, "
            "quiet)",
            ", ".join(f"{region} {calls:.2f}" for region, calls in per_target.items()),
            "1 each",
        )
        for label, index in (("bot (gunicorn worker)", 1), ("gunicorn master", 0)):
            self.row(
                f"RSS of the {label}: after start, after run 1, after run 2",
                ", ".join(f"{r[index] / 1024:.1f} MiB" for r in (rss_start, *rss_after)),
                "< 100 MB" if index == 1 else "",
            )
        growth = (rss_after[1][1] - rss_after[0][1]) / 1024
        self.row("RSS growth of the bot between identical runs", f"{growth:+.1f} MiB", "none")
        if soak_rss:
            self.row(
                f"RSS of the bot after each of {len(soak_rss)} more storms (--soak)",
                ", ".join(f"{r / 1024:.1f}" for r in soak_rss) + " MiB",
            )
        self.row("bot exit code on SIGTERM", str(code), "0")


def spread(values: list[float], *, with_max: bool = True) -> str:
    text = f"p50 {ms(statistics.median(values))}, p99 {ms(pct(values, 99))}"
    return text + (f", max {ms(max(values))}" if with_max else "")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "bot", "bench"], cwd=ROOT, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def render(rows: list[tuple[str, str, str]], *, command: str, seconds: float) -> str:
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; commit {commit()}; "
        f"`{command}` took {seconds:.0f} s.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        *[f"| {m} | {r} | {t} |" for m, r, t in rows],
    ]
    return "\n".join(lines)


def write(out: Path, table: str, markers: tuple[str, str] = (START, END)) -> None:
    """Put `table` between a benchmark's two markers in `out` (added at the end the first time)."""
    start, end = markers
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1] if end in rest else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["history"]:  # `python -m bench history`: what a year of history costs (bench/history.py)
        from bench.history import main as history

        return history(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a seconds-long version (used by the tests)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--soak", type=int, default=0, metavar="N", help="N more storms after the two, with the bot's RSS after each"
    )
    args = parser.parse_args(argv)
    scale = SMOKE if args.smoke else FULL
    if SERVER_CPU_PREFIX:
        os.sched_setaffinity(0, set(CORES[1:]))  # the load generator, spawned from here, inherits it
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dbss-bench-") as tmp:
        bench = Bench(scale, Path(tmp), soak=args.soak)
        try:
            bench.run()
        finally:
            bench.close()
    command = "python -m bench" + (" --smoke" if args.smoke else "") + (f" --soak {args.soak}" if args.soak else "")
    table = render(bench.rows, command=command, seconds=time.monotonic() - started)
    write(args.out, table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
