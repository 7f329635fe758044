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
from collections.abc import Callable
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
from bot.core.follow import Ending, Follower, Progress
from bot.core.outbox import OutboxMessage
from bot.core.reboots import (
    Accepted,
    Confirmed,
    NeedsSecondApprover,
    NotRequester,
    Offer,
    RebootService,
    Refused,
    new_correlation_id,
)
from bot.core.store import FollowUp
from bot.dbss.errors import DbssError
from bot.slack import messages

CHANNEL = "console"
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


def to_text(mrkdwn: str) -> str:
    """Slack mrkdwn as terminal text: mentions, dates and links resolved, markup and entities removed."""
    text = re.sub(r"<!date\^(\d+)\^[^|>]*\|[^>]*>", lambda m: f"{datetime.fromtimestamp(int(m[1])):%H:%M:%S}", mrkdwn)
    text = re.sub(r"<@([A-Z0-9a-z:._-]+)>", r"@\1", text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r":([a-z_]+):", lambda m: EMOJI.get(m[1], ""), text)
    text = text.replace("*", "").replace("`", "")
    return html.unescape(text).strip()


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
        return "console"

    def finished(self, followup: FollowUp, ending: Ending) -> list[OutboxMessage]:
        if self._live:
            self._out.write("\r\033[K")
        self._out.write(to_text(messages.finished_text(followup, ending)) + "\n")
        self._out.flush()
        return []  # said on the terminal: nothing to deliver


class Console:
    """One person at a terminal. Every reboot still needs a typed confirmation."""

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
        self._follower = Follower(
            dbss=service.dbss,
            store=service.store,
            notifier=ConsoleNotifier(out, live=live),
            interval_seconds=poll_interval,
        )

    def say(self, text: str) -> None:
        self._out.write(to_text(text) + "\n")
        self._out.flush()

    def ask(self, prompt: str) -> str:
        self._out.write(prompt)
        self._out.flush()
        line = self._inp.readline()
        if not line:
            return ""
        return line.strip()

    def run(self) -> int:
        self.say("Type /dbss-reboot <instance_id>, list, status <id>, history, help, or quit.")
        while True:
            line = self.ask("> ")
            if line.lower() in ("", "quit", "exit"):
                return 0
            self.handle(line.removeprefix("/dbss-reboot").strip())

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
                    instance = next((i for i in service.dbss.list_instances() if i.id == iid), None)
                    if instance is None:
                        self.say(f":mag: No DBSS audit instance {messages.code(iid)} in this project.")
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
            self._out.write(
                f"  {n}. {instance.name or instance.id} ({instance.id}) {instance.status}/{instance.task}\n"
            )
        choice = self.ask("Which one? (number, or Enter for none) ")
        if choice.isdigit() and 1 <= int(choice) <= len(instances):
            self.reboot(instances[int(choice) - 1].id)

    def reboot_by_name(self, name: str) -> None:
        """As in Slack: one instance of that name is offered; several or none are said."""
        try:
            found = by_name(self._service.dbss.list_instances(), name)
        except DbssError as err:
            self.say(f":warning: DBSS could not be read ({messages.escape(type(err).__name__)}); use the ID.")
            return
        if len(found) == 1:
            self.reboot(found[0].id)
        elif found:
            ids = ", ".join(messages.code(i.id) for i in found)
            self.say(f"{messages.several_named(name, len(found))} Use one of the IDs: {ids}.")
        else:
            self.say(messages.no_such_name(name, self._service.project_id))

    def reboot(self, instance_id: str) -> None:
        service = self._service
        correlation_id = new_correlation_id()
        result = service.offer(user=self._user, channel=CHANNEL, instance_id=instance_id, correlation_id=correlation_id)
        if not isinstance(result, Offer):
            self.say(messages.offer_refusal(result))
            return
        card = messages.card(result, second_approver=service.require_second_approver)
        self._out.write("\n" + blocks_to_text([b for b in card if b.get("type") != "actions"]) + "\n")
        answer = self.ask(f"Type 'reboot' to reboot {instance_id} now, anything else cancels: ")
        action: Literal["confirm", "cancel"] = "confirm" if answer.lower() in ("reboot", "confirm", "yes") else "cancel"
        decision = service.decide(
            token=result.token, clicker=self._user, channel=CHANNEL, thread_ts=correlation_id, action=action
        )
        match decision:
            case Refused(reason=reason):
                self.say(f":no_entry: {messages.escape(reason)}")
                return
            case NotRequester():
                self.say(messages.not_requester(decision))
                return
            case NeedsSecondApprover():
                self.say(messages.needs_second_approver(decision))
                return
            case Confirmed():
                self.say(messages.decision_line(decision))
            case _:
                self.say(messages.decision_line(decision))
                return
        outcome = service.execute(decision, thread_ts=correlation_id)
        self.say(f"{messages.outcome_text(outcome)} (ref {correlation_id})")
        if isinstance(outcome, Accepted):
            self.follow(correlation_id)

    def follow(self, correlation_id: str) -> None:
        """Poll in the foreground until the follow-up ends (the same Follower as the bot's)."""
        store = self._service.store
        while any(f.correlation_id == correlation_id for f in store.active_followups()):
            self._sleep(self._interval)
            self._follower.tick()
