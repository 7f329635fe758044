"""What the person typed after /dbss-reboot, parsed into one request (or a reason it is not one).

Subcommand words come first; then an instance ID (32 to 64 letters, digits or '-'); any other single word made
of the characters DBSS allows in names is an instance name, resolved against the instance list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.dbss.models import Instance, is_instance_id

USAGE = "/dbss-reboot <instance_id>"
MAX_ECHO = 80
MAX_REASON = 300
REASON_RE = re.compile(r"\breason:", re.IGNORECASE)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """`help`."""


@dataclass(frozen=True, slots=True)
class ShowPicker:
    """No argument: choose from a menu."""


@dataclass(frozen=True, slots=True)
class RebootCommand:
    instance_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RebootByName:
    """A reboot asked for by the instance's name: it must name exactly one instance."""

    name: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StatusCommand:
    instance_id: str


@dataclass(frozen=True, slots=True)
class ListCommand:
    page: int = 1


@dataclass(frozen=True, slots=True)
class HistoryCommand:
    instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unparseable:
    """Not a request the bot will act on; `reason` says why and what to do instead."""

    reason: str


Command = (
    ShowHelp | ShowPicker | RebootCommand | RebootByName | StatusCommand | ListCommand | HistoryCommand | Unparseable
)


def echo(text: str) -> str:
    """A short, single-line rendering of user input for messages (the Slack layer escapes it)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ECHO else flat[: MAX_ECHO - 1] + "…"


def _not_an_id(word: str) -> Unparseable:
    return Unparseable(
        f"“{echo(word)}” is not a DBSS instance ID or name: an ID is 32 to 64 letters, digits or '-', "
        f"as shown in the DBSS console or `/dbss-reboot list`. Usage: `{USAGE}`."
    )


def parse(text: str) -> Command:
    """The command; free text is allowed only after `reason:` on a reboot request."""
    head_text, marker, reason_text = REASON_RE.split(text, maxsplit=1)[0], REASON_RE.search(text), ""
    if marker:
        reason_text = text[marker.end() :]
        command = _parse_words(head_text)
        reason = " ".join(reason_text.split())
        if not isinstance(command, RebootCommand | RebootByName):
            return (
                command
                if isinstance(command, Unparseable)
                else Unparseable(f"A reason goes with a reboot only: `{USAGE} reason: <why>`.")
            )
        if not reason:
            return Unparseable(f"Give the reason after `reason:`, e.g. `{USAGE} reason: audit agent stuck`.")
        if len(reason) > MAX_REASON:
            return Unparseable(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.")
        if isinstance(command, RebootByName):
            return RebootByName(command.name, reason)
        return RebootCommand(command.instance_id, reason)
    return _parse_words(text)


def by_name(instances: list[Instance], name: str) -> list[Instance]:
    """The instances with this name: exactly, or else ignoring case."""
    exact = [i for i in instances if i.name == name]
    return exact or [i for i in instances if i.name.lower() == name.lower()]


def _parse_words(text: str) -> Command:
    words = text.split()
    if not words:
        return ShowPicker()
    head, rest = words[0].lower(), words[1:]
    if head == "help" and not rest:
        return ShowHelp()
    if head == "status":
        if len(rest) != 1:
            return Unparseable("Usage: `/dbss-reboot status <instance_id>`.")
        return StatusCommand(rest[0]) if is_instance_id(rest[0]) else _not_an_id(rest[0])
    if head == "list":
        if not rest:
            return ListCommand()
        if len(rest) == 1 and rest[0].isdigit() and 0 < int(rest[0]) < 10_000:
            return ListCommand(int(rest[0]))
        return Unparseable("Usage: `/dbss-reboot list [page]`.")
    if head == "history":
        if not rest:
            return HistoryCommand()
        if len(rest) == 1:
            return HistoryCommand(rest[0]) if is_instance_id(rest[0]) else _not_an_id(rest[0])
        return Unparseable("Usage: `/dbss-reboot history [instance_id]`.")
    if len(words) > 1:
        return Unparseable(
            f"`/dbss-reboot` takes exactly one instance ID, but got {len(words)} words. Usage: `{USAGE}`, "
            "optionally followed by `reason: <why>`."
        )
    if is_instance_id(words[0]):
        return RebootCommand(words[0])
    if NAME_RE.fullmatch(words[0]):
        return RebootByName(words[0])
    return _not_an_id(words[0])
