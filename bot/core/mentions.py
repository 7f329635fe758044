"""Finding the DBSS instances an alert message talks about: IDs anywhere in it, or names the list knows."""

from __future__ import annotations

import re
from typing import Any

from bot.dbss.models import Instance

# An instance ID as defined for the command (32 to 64 letters, digits or '-'), not part of a longer token.
ID_IN_TEXT = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z0-9-]{32,64}(?![A-Za-z0-9-])")
MAX_TEXT = 200_000  # an alert is not a novel; anything beyond this is not read
MIN_NAME = 4  # shorter names would match ordinary words


def message_texts(message: dict[str, Any]) -> list[str]:
    """Every string in the message's text, blocks and attachments (monitoring tools put IDs anywhere)."""
    found: list[str] = []
    budget = [MAX_TEXT]

    def walk(value: Any, depth: int = 0) -> None:
        if depth > 20 or budget[0] <= 0:
            return
        if isinstance(value, str):
            found.append(value[: budget[0]])
            budget[0] -= len(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                walk(item, depth + 1)

    for key in ("text", "blocks", "attachments"):
        walk(message.get(key), 0)
    return found


def find_instances(message: dict[str, Any], instances: list[Instance] | None) -> list[str]:
    """IDs of the instances the message names, in the order they appear, each once.

    IDs that look like instance IDs count even when the list is unavailable (None) or lacks a region that
    could not be read (its `unreadable`); otherwise only IDs it contains count, and names it knows are matched
    as whole words.
    """
    texts = message_texts(message)
    complete = instances is not None and not getattr(instances, "unreadable", None)
    known = {i.id for i in instances} if instances is not None and complete else None
    ordered: dict[str, None] = {}
    for text in texts:
        for match in ID_IN_TEXT.finditer(text):
            if known is None or match.group(0) in known:
                ordered.setdefault(match.group(0), None)
    if instances:
        joined = "\n".join(texts)
        for instance in instances:
            name = instance.name.strip()
            if len(name) >= MIN_NAME and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", joined):
                ordered.setdefault(instance.id, None)
    return list(ordered)
