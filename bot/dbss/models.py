"""What the bot knows about an audit instance, parsed tolerantly from the list API."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

HEALTHY_STATUS = "ACTIVE"
IDLE_TASK = "NO_TASK"


@dataclass(frozen=True, slots=True)
class Instance:
    """One DBSS audit instance as the list API reports it; unknown status values are kept as they are."""

    id: str
    name: str
    status: str
    task: str
    version: str | None = None
    region: str | None = None
    zone: str | None = None
    # The bot's own tags, not DBSS's: which of its targets listed this instance (region:project_id), and that
    # target's label for people (the region, or region/project_id when one region has two projects).
    target: str | None = None
    where: str | None = None

    @property
    def rebootable(self) -> bool:
        return self.status == HEALTHY_STATUS and self.task == IDLE_TASK


@functools.cache  # a handful of keys, asked for once per field of every instance of every list: 75% of a parse
def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _pick(raw: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        for variant in (key, _camel(key)):
            value = raw.get(variant)
            if value is not None and value != "":
                return str(value)
    return None


def parse_instance(raw: dict[str, Any], *, target: str | None = None, where: str | None = None) -> Instance | None:
    """An Instance from one list element, or None if it carries no ID at all."""
    instance_id = _pick(raw, "id", "instance_id")
    if instance_id is None:
        return None
    return Instance(
        id=instance_id,
        name=_pick(raw, "name", "instance_name") or "",
        status=_pick(raw, "status") or "UNKNOWN",
        task=_pick(raw, "task") or "UNKNOWN",
        version=_pick(raw, "version"),
        region=_pick(raw, "region"),
        zone=_pick(raw, "zone"),
        target=target,
        where=where,
    )


INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9-]{32,64}")


def is_instance_id(text: str) -> bool:
    """True for 32 to 64 letters, digits and '-': the only form that may go into a DBSS request."""
    return INSTANCE_ID_RE.fullmatch(text) is not None
