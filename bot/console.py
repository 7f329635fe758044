"""A terminal conversation with the same core as Slack: `python -m bot demo` and `python -m bot console`.

The same parsing, policy, signed single-use confirmation, DBSS client, follow-up and messages as in Slack,
with the Block Kit and mrkdwn rendered as plain text. `demo` talks to the built-in simulator; `console`
uses the configured DBSS endpoint and credentials, as a break-glass tool for when Slack is down.
"""

from __future__ import annotations

import html
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, TextIO

from bot.core.commands import (
    HistoryCommand,
    ListCommand,
    RebootByName,
    RebootCommand,
    ShowHelp,
    ShowPicker,
    StatusCommand,
    Unparseable,
    by_name,
    parse,
)
from bot.core.contract import FollowUp, Store
from bot.core.follow import Ending, Follower, Progress
from bot.core.outbox import OutboxMessage
from bot.core.reboots import (
    CONSOLE_CHANNEL,
    Accepted,
    Confirmed,
    Interrupted,
    NeedsSecondApprover,
    NotRequester,
    Offer,
    RebootService,
    Refused,
    new_correlation_id,
)
from bot.dbss.errors import DbssError
from bot.slack import messages

CHANNEL = CONSOLE_CHANNEL
# What a terminal would act on rather than print: C0 controls but newline and tab (ESC starts every ANSI sequence,
# CR rewrites the line, BEL rings), DEL, C1 controls (0x9b is a one-byte CSI), and the bidirectional overrides that
# make text read other than it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
EMOJI = {
    "warning": "⚠️",
    "white_check_mark": "✅",
    "x": "❌",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "arrows_counterclockwise": "🔄",
    "large_green_circle": "🟢",
    "rotating_light": "🚨",
    "checkered_flag": "🏁",
    "mag": "🔍",
    "grey_question": "❔",
    "information_source": "\u2139\ufe0f",
    "boom": "💥",
    "electric_plug": "🔌",
}


def inert(text: str) -> str:
    """Text made safe to print: every control character shown as its escape (ESC as \\x1b), so that an ANSI
    sequence from an API is read by the operator instead of acted on by the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def to_text(mrkdwn: str) -> str:
    """Slack mrkdwn as terminal text: mentions, dates and links resolved, markup and entities removed, control
    characters made inert (last, so that no entity can bring one back)."""
    text = re.sub(r"<!date\^(\d+)\^[^|>]*\|[^>]*>", lambda m: f"{datetime.fromtimestamp(int(m[1])):%H:%M:%S}", mrkdwn)
    text = re.sub(r"<@([A-Z0-9a-z:._-]+)>", r"@\1", text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r":([a-z_]+):", lambda m: EMOJI.get(m[1], ""), text)
    text = text.replace("*", "").replace("`", "")
    return inert(html.unescape(text).strip())


def blocks_to_text(blocks: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for block in blocks:
        if block.get("type") == "section":
            if "text" in block:
                lines.append(to_text(block["text"]["text"]))
            for field in block.get("fields", []):
                name, _, value = field["text"].partition("\n")
                lines.append(f"  {to_text(name)}: {to_text(value)}")
        elif block.get("type") == "context":
            lines.append("  " + " ".join(to_text(e.get("text", "")) for e in block["elements"]))
        elif block.get("type") == "actions":
            lines.append("  " + "  ".join(f"[ {e['text']['text']} ]" for e in block["elements"] if "text" in e))
    return "\n".join(lines)


class ConsoleNotifier:
    """Follow-up progress as one live line on a terminal (a line per change elsewhere), then the ending."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self._out = out
        self._live = live

    def progress(self, followup: FollowUp, progress: Progress) -> str | None:
        line = to_text(messages.progress_text(followup, progress))
        if self._live:
            self._out.write("\r\033[K" + line)
        else:
            self._out.write(line + "\n")
        self._out.flush()
        return CHANNEL

    def finished(self, followup: FollowUp, ending: Ending) -> list[OutboxMessage]:
        if self._live:
            self._out.write("\r\033[K")
        self._out.write(to_text(messages.finished_text(followup, ending)) + "\n")
        self._out.flush()
        return []  # said on the terminal: nothing to deliver


class ForegroundFollowUps:
    """The console's own follow-ups, in memory: never in the shared store, where the bot's follower would take them
    (and post to a channel that does not exist), and the console's follower never sees the bot's. The ending's audit
    entry and the lock's release go to the shared store. A console stopped mid-follow leaves the lock to expire."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._active: dict[str, FollowUp] = {}

    def add(self, followup: FollowUp) -> None:
        self._active[followup.correlation_id] = followup

    def following(self, correlation_id: str) -> bool:
        return correlation_id in self._active

    def active_followups(self) -> list[FollowUp]:
        return list(self._active.values())

    def update_followups(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        for correlation_id, fields in updates:
            if correlation_id in self._active:
                self._active[correlation_id] = replace(self._active[correlation_id], **fields)

    def finish_followup(self, correlation_id: str, outcome: str) -> bool:
        return self._active.pop(correlation_id, None) is not None

    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None:
        self._store.record(event, announce=announce, **fields)

    def release_lock(self, instance_id: str, correlation_id: str) -> None:
        self._store.release_lock(instance_id, correlation_id)


def approve_command(token: str) -> str:
    return f"python -m bot console --approve {token}"


class Console:
    """One person at a terminal. Every reboot still needs a typed confirmation; with BOT_REQUIRE_SECOND_APPROVER,
    a second operator's too (`approve`)."""

    def __init__(
        self,
        *,
        service: RebootService,
        user: str,
        poll_interval: float,
        inp: TextIO = sys.stdin,
        out: TextIO = sys.stdout,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._service = service
        self._user = user
        self._inp = inp
        self._out = out
        self._interval = poll_interval
        self._sleep = sleep
        live = bool(getattr(out, "isatty", lambda: False)())
        self._followups = ForegroundFollowUps(service.store)
        self._follower = Follower(
            dbss=service.dbss,
            store=self._followups,
            notifier=ConsoleNotifier(out, live=live),
            interval_seconds=poll_interval,
        )

    def say(self, text: str) -> None:
        self._out.write(to_text(text) + "\n")
        self._out.flush()

    def ask(self, prompt: str) -> str:
        self._out.write(inert(prompt))
        self._out.flush()
        line = self._inp.readline()
        if not line:
            return ""
        return line.strip()

    def run(self) -> int:
        self.recover()
        self.say("Type /dbss-reboot <instance_id>, list, status <id>, history, help, or quit.")
        while True:
            line = self.ask("> ")
            if line.lower() in ("", "quit", "exit"):
                return 0
            self.handle(line.removeprefix("/dbss-reboot").strip())

    def recover(self) -> None:
        """Tell this user about their console reboots whose outcome a stopped console never showed (once)."""
        for found in self._service.recover(console_user=self._user):
            self.say(interrupted_text(found))

    def handle(self, text: str) -> None:
        parsed = parse(text)
        service = self._service
        match parsed:
            case ShowHelp():
                self.say(messages.help_text(may_reboot_here=service.policy.refusal(self._user, CHANNEL)))
            case Unparseable(reason=reason):
                self.say(f":no_entry: {messages.escape(reason)}")
            case ShowPicker():
                self.pick()
            case RebootCommand(instance_id=iid):
                self.reboot(iid)
            case RebootByName(name=name):
                self.reboot_by_name(name)
            case StatusCommand() | ListCommand() | HistoryCommand():
                self.read_only(parsed)

    def read_only(self, command: StatusCommand | ListCommand | HistoryCommand) -> None:
        service = self._service
        links = messages.Links(None)
        try:
            match command:
                case StatusCommand(instance_id=iid):
                    listed = service.dbss.list_instances()
                    instance = next((i for i in listed if i.id == iid), None)
                    if instance is None:
                        self.say(messages.no_such_id(iid, listed, single=len(service.dbss.targets) == 1))
                    else:
                        self.say(messages.status_text(instance, service.store.last_reboot(iid), links))
                case ListCommand(page=page):
                    self.say(
                        messages.list_text(service.dbss.list_instances(), page=page, project_id=service.project_id)
                    )
                case HistoryCommand(instance_id=iid):
                    entries, outcomes = service.history(iid)
                    self.say(messages.history_text(entries, outcomes, links, iid))
        except DbssError as err:
            self.say(f":warning: DBSS: {messages.escape(str(err))}")

    def pick(self) -> None:
        try:
            instances = self._service.dbss.list_instances()
        except DbssError as err:
            self.say(f":warning: DBSS: {messages.escape(str(err))}")
            return
        for n, instance in enumerate(instances, 1):
            region = messages.region_of(instance)
            self._out.write(
                inert(
                    f"  {n}. {instance.name or instance.id} ({instance.id}) {instance.status}/{instance.task}"
                    + (f" in {region}" if region else "")
                )
                + "\n"
            )
        choice = self.ask("Which one? (number, or Enter for none) ")
        if choice.isdigit() and 1 <= int(choice) <= len(instances):
            self.reboot(instances[int(choice) - 1].id)

    def reboot_by_name(self, name: str) -> None:
        """As in Slack: one instance of that name is offered; several or none are said."""
        try:
            instances = self._service.dbss.list_instances()
            found = by_name(instances, name)
        except DbssError as err:
            self.say(f":warning: DBSS could not be read ({messages.escape(type(err).__name__)}); use the ID.")
            return
        if len(found) == 1:
            self.reboot(found[0].id)
        elif found:
            ids = ", ".join(
                messages.code(i.id) + (f" in {region}" if (region := messages.region_of(i)) else "") for i in found
            )
            self.say(f"{messages.several_named(name, len(found))} Use one of the IDs: {ids}.")
        else:
            self.say(messages.no_such_name(name, self._service.project_id, instances))

    def reboot(self, instance_id: str) -> None:
        service = self._service
        correlation_id = new_correlation_id()
        result = service.offer(user=self._user, channel=CHANNEL, instance_id=instance_id, correlation_id=correlation_id)
        if not isinstance(result, Offer):
            self.say(messages.offer_refusal(result))
            return
        card = messages.card(result, second_approver=service.require_second_approver)
        self._out.write("\n" + blocks_to_text([b for b in card if b.get("type") != "actions"]) + "\n")
        if service.require_second_approver:
            self.say(
                ":no_entry: Not rebooted yet: a second approver is required (BOT_REQUIRE_SECOND_APPROVER). Another "
                "operator, logged in as a different user where this state is shared (the same BOT_STATE_PATH, or the "
                f"same REDIS_URL), approves and reboots with this one-time code before it expires:\n  "
                f"{approve_command(result.token)}"
            )
            return
        answer = self.ask(f"Type 'reboot' to reboot {instance_id} now, anything else cancels: ")
        self.decide_and_reboot(result.token, correlation_id, answer)

    def approve(self, token: str) -> int:
        """The second operator's side: show what was asked, then a typed confirmation of their own. 0: rebooted."""
        self.recover()
        asked = self._service.confirmation(token)
        if asked is None or (asked.requester == self._user and self._service.require_second_approver):
            answer = "reboot"  # decide() refuses an invalid code, or the requester's own, and records why
        else:
            self.say(
                f":warning: {messages.escape(asked.requester)} asks to reboot DBSS instance "
                f"{messages.code(asked.instance_id)}; you are the second approver, as {messages.escape(self._user)}. "
                f"Ref {asked.nonce}"
            )
            self.read_only(StatusCommand(asked.instance_id))
            answer = self.ask(f"Type 'reboot' to approve and reboot {asked.instance_id} now, anything else cancels: ")
        correlation_id = asked.nonce if asked is not None else new_correlation_id()
        return 0 if self.decide_and_reboot(token, correlation_id, answer) else 1

    def decide_and_reboot(self, token: str, correlation_id: str, answer: str) -> bool:
        """Use the confirmation up (or cancel it), reboot once, follow to the end. True when DBSS accepted."""
        service = self._service
        action: Literal["confirm", "cancel"] = "confirm" if answer.lower() in ("reboot", "confirm", "yes") else "cancel"
        decision = service.decide(
            token=token, clicker=self._user, channel=CHANNEL, thread_ts=correlation_id, action=action
        )
        match decision:
            case Refused(reason=reason):
                self.say(f":no_entry: {messages.escape(reason)}")
                return False
            case NotRequester():
                self.say(messages.not_requester(decision))
                return False
            case NeedsSecondApprover():
                self.say(
                    ":no_entry: You asked for this reboot yourself: a second operator, logged in as another user, "
                    "must approve it. Nothing was done."
                )
                return False
            case Confirmed():
                self.say(messages.decision_line(decision))
            case _:
                self.say(messages.decision_line(decision))
                return False
        outcome = service.execute(decision, thread_ts=correlation_id, store_followup=False)
        self.say(f"{messages.outcome_text(outcome, decision.confirmation.target)} (ref {correlation_id})")
        service.reported(correlation_id, how="on the console")
        if isinstance(outcome, Accepted) and outcome.followup is not None:
            self.follow(outcome.followup)
        return isinstance(outcome, Accepted)

    def follow(self, followup: FollowUp) -> None:
        """Poll in the foreground until this reboot's follow-up ends (the same Follower as the bot's, on the
        console's own follow-ups only)."""
        self._followups.add(followup)
        while self._followups.following(followup.correlation_id):
            self._sleep(self._interval)
            self._follower.tick()


def interrupted_text(found: Interrupted) -> str:
    """What a console tells at start-up about its own reboot whose outcome a stopped console never showed."""
    e = found.entry
    iid = messages.code(e.instance_id or "?")
    if found.unknown:
        return (
            f":warning: *Outcome unknown* for {iid}: the console stopped while waiting for DBSS's answer to this "
            f"reboot (ref {messages.escape(e.correlation_id or '?')}, at {messages.when(e.at)}). It was not retried. "
            f"Check the instance (status {messages.escape(e.instance_id or '')}): task rebooting means it started; "
            "reboot again only once it shows ACTIVE with task NO_TASK and you are sure it is needed."
        )
    rid = f", DBSS request ID {messages.code(e.dbss_request_id)}" if e.dbss_request_id else ""
    return (
        f":information_source: The console stopped before it could show this: the reboot of {iid} was "
        f"*{messages.escape(e.outcome or '?')}*{rid} (ref {messages.escape(e.correlation_id or '?')})."
    )
