"""Every (region, project) the bot serves, as one: lists read in parallel, reboots sent where the instance lives.

Each target keeps its own client (its own credentials: an IAM token is scoped to one project) and its own shared
list call, so a storm still costs one list call per target, and a target that is down or slow delays nobody
else's answer: a reader that needs every list waits for each, one that needs one target waits for that one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol

from bot.config import Target
from bot.core.listing import SharedListing
from bot.dbss.client import RebootAccepted
from bot.dbss.errors import DbssError, DbssNotSent
from bot.dbss.models import Instance


class Client(Protocol):
    """What the fleet needs from one target's DBSS client."""

    def list_instances(self) -> list[Instance]: ...

    def reboot(self, instance_id: str) -> RebootAccepted: ...


class InstanceList(list[Instance]):
    """The instances of every target that answered; `unreadable` names each target that did not (label: error)."""

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        unreadable: dict[str, DbssError] | None = None,
        regions: tuple[str, ...] = (),
    ) -> None:
        super().__init__(instances)
        self.unreadable: dict[str, DbssError] = unreadable or {}
        self.regions = regions  # the labels of the targets asked


class NoRegionReadable(DbssError):
    """Every target's list failed: there is nothing to show, and each failure is in `unreadable`."""

    def __init__(self, unreadable: dict[str, DbssError]) -> None:
        super().__init__(
            "no region's instance list could be read: "
            + "; ".join(f"{label} ({type(err).__name__})" for label, err in unreadable.items())
        )
        self.unreadable = unreadable


@dataclass(frozen=True, slots=True)
class Member:
    target: Target
    client: Client
    listing: SharedListing


class Fleet:
    """The targets, in the order configured. With one target it behaves as that target's client did."""

    def __init__(self, members: Sequence[tuple[Target, Client]]) -> None:
        if not members:
            raise ValueError("a fleet needs at least one target")
        self.members = tuple(Member(t, c, SharedListing(c)) for t, c in members)
        self._by_key = {m.target.key: m for m in self.members}
        if len({m.target.label for m in self.members}) != len(self.members):  # labels key unreadable lists
            raise ValueError("two targets have the same label")

    @property
    def targets(self) -> tuple[Target, ...]:
        return tuple(m.target for m in self.members)

    @property
    def single(self) -> bool:
        return len(self.members) == 1

    def member(self, key: str | None) -> Member | None:
        """The target with this key; None (no key) means the only target, when there is only one."""
        if key is None:
            return self.members[0] if self.single else None
        return self._by_key.get(key)

    def label(self, key: str | None) -> str | None:
        member = self.member(key)
        return member.target.label if member is not None else None

    # --- reading the lists ---------------------------------------------------------------------------

    def fetch(self, *, find: str | None = None) -> Future[list[Instance]]:
        """A Future of the instances of every target, as an InstanceList.

        With one target its error is the Future's error, as the bare client raised it; with several, the
        failures are named in `unreadable`, and when none answered the error is NoRegionReadable.
        `find`: an instance ID, which is unique across targets: the Future is done as soon as a list holding
        it arrives (a card need not wait for a region that is slow or down), with the lists arrived so far."""
        if self.single:
            return self.members[0].listing.fetch()
        combined: Future[list[Instance]] = Future()
        parts = [(m, m.listing.fetch()) for m in self.members]
        lock = threading.Lock()
        arrived: list[tuple[Member, Future[list[Instance]]]] = []

        def one_done(part: Future[list[Instance]]) -> None:
            member = next(m for m, p in parts if p is part)
            with lock:
                if combined.done():
                    return
                arrived.append((member, part))
                found = find is not None and part.exception() is None and any(i.id == find for i in part.result())
                if len(arrived) < len(parts) and not found:
                    return
                result = InstanceList(regions=tuple(m.target.label for m, _ in parts))
                # In the configured order of the targets, whichever answered first: lists and menus keep their order.
                for done_member, done_part in sorted(arrived, key=lambda a: self.members.index(a[0])):
                    error = done_part.exception()
                    if error is None:
                        key, label = done_member.target.key, done_member.target.label
                        # Each instance carries its target (the client tags them; one that did not is tagged here),
                        # so an offer is made for, and a reboot sent to, the target that listed the instance.
                        result.extend(
                            i if i.target == key and i.where == label else replace(i, target=key, where=label)
                            for i in done_part.result()
                        )
                    elif isinstance(error, DbssError):
                        result.unreadable[done_member.target.label] = error
                    else:  # a bug, not an unreachable region: let it be seen
                        combined.set_exception(error)
                        return
                if len(arrived) == len(parts) and len(result.unreadable) == len(parts):
                    combined.set_exception(NoRegionReadable(result.unreadable))
                    return
                combined.set_result(result)

        for _, part in parts:
            part.add_done_callback(one_done)
        return combined

    def list_instances(self) -> list[Instance]:
        return self.fetch().result()

    def recent(self, max_age: float, *, timeout: float) -> list[Instance]:
        """A list no older than `max_age` seconds per target if there is one, else a fresh one (type-ahead menus).

        Each target is waited for until `timeout` at most: one that is slow or down is left out (and named in
        `unreadable`), not allowed to empty the menu of the others."""
        if self.single:
            return self.members[0].listing.recent(max_age, timeout=timeout)
        deadline = time.monotonic() + timeout
        pending = [(m, m.listing.cached(max_age) or m.listing.fetch()) for m in self.members]
        result = InstanceList(regions=tuple(m.target.label for m in self.members))
        for member, answer in pending:
            if isinstance(answer, list):
                result.extend(answer)
                continue
            try:
                result.extend(answer.result(timeout=max(0.0, deadline - time.monotonic())))
            except DbssError as err:
                result.unreadable[member.target.label] = err
            except TimeoutError:
                result.unreadable[member.target.label] = DbssError(f"{member.target.label} did not answer in time")
        if len(result.unreadable) == len(self.members):
            raise NoRegionReadable(result.unreadable)
        return result

    def wait_idle(self, timeout: float) -> None:
        for member in self.members:
            member.listing.wait_idle(timeout)

    # --- rebooting -----------------------------------------------------------------------------------

    def reboot(self, instance_id: str, target: str | None = None) -> RebootAccepted:
        """Reboot the instance in the target the confirmation names (never anywhere else)."""
        member = self.member(target)
        if member is None and target is None:
            raise DbssNotSent(
                "this card was made before the bot served several regions, so it names none; ask for a new card"
            )
        if member is None:
            raise DbssNotSent(f"the region this confirmation was made for ({target}) is not served by this bot now")
        return member.client.reboot(instance_id)

    def close(self) -> None:
        for member in self.members:
            close = getattr(member.client, "close", None)
            if callable(close):
                close()
