"""What the person typed after /dbss-reboot, parsed into one request (or a reason it is not one)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.dbss.models import is_instance_id

USAGE = "/dbss-reboot <instance_id>"
MAX_ECHO = 80


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """`help`, or nothing at all."""


@dataclass(frozen=True, slots=True)
class RebootCommand:
    instance_id: str


@dataclass(frozen=True, slots=True)
class Unparseable:
    """Not a request the bot will act on; `reason` says why and what to do instead."""

    reason: str


Command = ShowHelp | RebootCommand | Unparseable


def echo(text: str) -> str:
    """A short, single-line rendering of user input for messages (the Slack layer escapes it)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ECHO else flat[: MAX_ECHO - 1] + "…"


def parse(text: str) -> Command:
    words = text.split()
    if not words or (len(words) == 1 and words[0].lower() == "help"):
        return ShowHelp()
    if len(words) > 1:
        return Unparseable(
            f"`/dbss-reboot` takes exactly one instance ID, but got {len(words)} words. Usage: `{USAGE}`."
        )
    if not is_instance_id(words[0]):
        return Unparseable(
            f"“{echo(words[0])}” is not a DBSS instance ID: an ID is 32 to 64 letters, digits or '-', "
            "as shown in the DBSS console or the instance list. Usage: `" + USAGE + "`."
        )
    return RebootCommand(words[0])
