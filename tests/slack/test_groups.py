"""User groups on the allow-list: a failed refresh never empties a group, never widens it, and is retried soon."""

from __future__ import annotations

from slack_sdk import WebClient

from bot.slack.groups import GroupDirectory
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.harness import ALICE, BOB, eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(fake_slack: FakeSlack, clock: Clock) -> GroupDirectory:
    client = WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/", timeout=2, retry_handlers=[])
    return GroupDirectory(client, ["SONCALL"], max_age_seconds=300, retry_seconds=15, clock=clock)


def test_ratelimited_refresh_keeps_the_last_members_and_retries_soon(fake_slack: FakeSlack) -> None:
    """One 429 keeps the on-call group's members; the retry 15 s later picks up the change."""
    fake_slack.usergroups["SONCALL"] = [ALICE, BOB]
    clock = Clock()
    groups = directory(fake_slack, clock)
    groups.refresh()
    assert groups.members() == {ALICE, BOB}
    fake_slack.fault("usergroups.users.list", "ratelimited")
    clock.now += 301
    groups.refresh()
    assert groups.members() == {ALICE, BOB}, "a transient error must not lock the group out"
    fake_slack.usergroups["SONCALL"] = [BOB]
    clock.now += 16  # due again after the short retry, not after 5 minutes
    groups.members()
    eventually(lambda: groups.members() == {BOB}, what="the retried refresh")


def test_network_error_does_not_end_the_refreshing(fake_slack: FakeSlack) -> None:
    """A dropped connection during a background refresh: the members stay, and later refreshes still run, so a
    removed member loses access."""
    fake_slack.usergroups["SONCALL"] = [ALICE, BOB]
    clock = Clock()
    groups = directory(fake_slack, clock)
    groups.refresh()
    fake_slack.fault("usergroups.users.list", "reset")
    clock.now += 301
    groups.members()  # starts the background refresh that meets the dropped connection
    # The background refresh has ended once it has set its next time: moving the clock before that would let
    # it set the retry from the moved clock, and the later refresh would never be due.
    eventually(lambda: groups.next_refresh == 1301 + 15, what="the failed refresh")
    assert len(fake_slack.calls("usergroups.users.list")) == 2
    assert groups.members() == {ALICE, BOB}
    fake_slack.usergroups["SONCALL"] = [BOB]
    clock.now += 16
    eventually(lambda: groups.members() == {BOB}, what="a later refresh")


def test_failure_never_widens(fake_slack: FakeSlack) -> None:
    """A group never read successfully has no members: deny by default."""
    clock = Clock()
    groups = directory(fake_slack, clock)
    fake_slack.fault("usergroups.users.list", "500")
    groups.refresh()
    assert groups.members() == frozenset()


def test_refresh_itself_never_raises_on_a_network_error(fake_slack: FakeSlack) -> None:
    """refresh() at start-up meets a dropped connection: it returns (the bot starts), keeping no one in."""
    clock = Clock()
    groups = directory(fake_slack, clock)
    fake_slack.fault("usergroups.users.list", "reset")
    groups.refresh()
    assert groups.members() == frozenset()
