"""Faults between the steps of a reboot: every Slack call and every store write around the DBSS call fails once.

Each run ends the same way: at most one reboot, the person told the true outcome exactly once and in order, the
card showing how it ended, and the lock released once the reboot is over (held while it is in flight).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import INSTANCE_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import FakeSlack, Message
from tests.harness import ALICE, INCIDENTS, Harness, eventually

FAST = {"bot_poll_interval_seconds": 0.05, "slack_timeout_seconds": 1}


@pytest.fixture
def fast(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> Iterator[Harness]:
    fake_dbss.reboot_polls = 3
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    yield h
    h.stop()


def text_of(args: dict[str, Any]) -> str:
    return str(args.get("text") or "")


def reboot(h: Harness, before_click: Callable[[Any], object] | None = None) -> Message:
    h.command(INSTANCE_ID)
    card = h.wait_for_card()
    if before_click is not None:
        before_click(card)
    h.click("dbss_reboot_confirm", card=card)
    return card


def thread(h: Harness, card: Message) -> list[str]:
    return [m.text for m in h.slack.thread(INCIDENTS, card.ts)]


def card_line(h: Harness, card: Message) -> str:
    with h.slack.lock:
        blocks = h.slack.messages[(card.channel, card.ts)].blocks
    return str(blocks[-1].get("text", {}).get("text", "")) if blocks else ""


def wait_until_over(h: Harness, card: Message, *, timeout: float = 20.0) -> None:
    """Until the follow-up has ended and the outbox is empty."""
    eventually(lambda: any(e.event == "followup_done" for e in h.bot.store.audit()), timeout=timeout, what="the end")
    eventually(lambda: h.bot.outbox.backlog()[0] == 0, timeout=timeout, what="the outbox to drain")


def count(texts: list[str], fragment: str) -> int:
    return sum(fragment in t for t in texts)


# --- the Slack fault matrix ------------------------------------------------------------------------------------

CALLS: dict[str, tuple[str, Callable[[Message], Callable[[dict[str, Any]], bool]]]] = {
    "card update": ("chat.update", lambda card: lambda a: a.get("ts") == card.ts),
    "outcome post": ("chat.postMessage", lambda card: lambda a: "DBSS accepted" in text_of(a)),
    "progress post": ("chat.postMessage", lambda card: lambda a: text_of(a).startswith(":hourglass_flowing_sand:")),
    "progress update": ("chat.update", lambda card: lambda a: "Followed" in text_of(a)),
    "end post": ("chat.postMessage", lambda card: lambda a: "back to *ACTIVE*" in text_of(a)),
}
FAULTS = ["reset", "reset_after", "timeout", "ratelimited", "500", "refused"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("call", list(CALLS))
def test_one_slack_fault_in_the_flow(fast: Harness, call: str, fault: str) -> None:
    """Whatever Slack does to one call: one reboot, each message once and in order, the card's true end."""
    method, matching = CALLS[call]
    kind = fault if fault != "refused" else ("message_not_found" if method == "chat.update" else "not_in_channel")
    struck: list[Any] = []
    card = reboot(fast, lambda card: struck.append(fast.slack.fault(method, kind, matching(card))))
    wait_until_over(fast, card)
    assert struck[0].hit is not None, "the fault never struck: the test would prove nothing"
    assert len(fast.dbss.reboot_requests()) == 1
    texts = thread(fast, card)
    lost = kind == "not_in_channel"  # refused for good: that message is not in the thread
    expected = [
        ("DBSS accepted", not (lost and call == "outcome post")),
        ("Follow", not (lost and call == "progress post")),  # "Following", then "Followed" once over
        ("back to *ACTIVE*", not (lost and call == "end post")),
    ]
    in_thread = [fragment for fragment, present in expected if present]
    assert [next(f for f in in_thread if f in t) for t in texts] == in_thread, texts
    if lost and call in ("outcome post", "end post"):  # a message a person must see goes to them directly
        fragment = "DBSS accepted" if call == "outcome post" else "back to *ACTIVE*"
        eventually(lambda: fast.slack.posted(ALICE, fragment), what="the direct message")
        assert len(fast.slack.posted(ALICE, fragment)) == 1
    eventually(lambda: card_line(fast, card).startswith(":white_check_mark: Rebooted: back to *ACTIVE*"), timeout=10)
    assert fast.bot.store.current_lock(INSTANCE_ID) is None


def test_a_post_that_may_have_arrived_is_found_in_a_long_thread(fast: Harness) -> None:
    """The card's thread already holds 250 replies (an alert thread) when the outcome's post is carried out by
    Slack and its answer lost: the look-up reads every page of the thread, finds it, and does not post it again."""
    card = reboot(
        fast, lambda card: fast.slack.fault("chat.postMessage", "reset_after", CALLS["outcome post"][1](card))
    )
    with fast.slack.lock:
        for n in range(250):
            ts = f"1600000000.{n:06d}"  # older than anything the bot posts: first in the thread
            fast.slack.messages[(INCIDENTS, ts)] = Message(INCIDENTS, ts, f"chatter {n}", [], card.ts)
    wait_until_over(fast, card)
    assert count(thread(fast, card), "DBSS accepted") == 1
    pages = [c for c in fast.slack.calls("conversations.replies") if c.get("ts") == card.ts]
    assert len(pages) >= 2 and any(c.get("cursor") for c in pages)


# --- store writes around the DBSS call -------------------------------------------------------------------------


def fail_writes(h: Harness, trigger: str) -> sqlite3.Connection:
    """A real fault inside the state file: a trigger that aborts one kind of write (disk full, in effect)."""
    db = sqlite3.connect(h.settings.bot_state_path, isolation_level=None)
    db.execute(f"CREATE TRIGGER fault {trigger} BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    return db


def heal(db: sqlite3.Connection) -> None:
    db.execute("DROP TRIGGER fault")
    db.close()


def test_confirmed_write_fails_after_the_lock_was_taken(fast: Harness) -> None:
    """The 'confirmed' audit entry cannot be written: no reboot, the person is told, and no lock is left."""
    db = fail_writes(fast, "BEFORE INSERT ON audit WHEN NEW.event = 'confirmed'")
    card = reboot(fast)
    assert "state store is unavailable" in fast.wait_for_hook(count=1)
    heal(db)
    fast.drain()
    assert fast.dbss.reboot_requests() == []
    assert fast.bot.store.current_lock(INSTANCE_ID) is None
    assert thread(fast, card) == []


def test_intent_write_fails(fast: Harness) -> None:
    """The intent cannot be recorded: DBSS is not called, the thread says so, the lock is released."""
    db = fail_writes(fast, "BEFORE INSERT ON audit WHEN NEW.event = 'reboot_intent'")
    card = reboot(fast)
    [reply] = eventually(lambda: thread(fast, card), what="the outcome")
    assert "was not sent" in reply and "could not record its intent" in reply
    heal(db)
    assert fast.dbss.reboot_requests() == []
    eventually(lambda: fast.bot.store.current_lock(INSTANCE_ID) is None, what="the lock released")
    eventually(lambda: card_line(fast, card).startswith(":x: Not rebooted"), what="the card")


@pytest.mark.parametrize(
    "trigger",
    [
        "BEFORE INSERT ON audit WHEN NEW.event = 'reboot_result'",
        "BEFORE INSERT ON followups",
        "BEFORE UPDATE ON locks",
    ],
    ids=["result", "follow-up", "lock extension"],
)
def test_store_fails_after_dbss_accepted(fast: Harness, trigger: str) -> None:
    """DBSS accepted, then a store write fails: the thread still hears 'accepted' with its request ID (not ':boom:'),
    the write lands when the store is back, and the reboot is followed to its end."""
    db = fail_writes(fast, trigger)
    card = reboot(fast)
    outcome = eventually(lambda: thread(fast, card), what="the outcome")[0]
    assert "DBSS accepted" in outcome and "Something went wrong" not in outcome
    assert fast.bot.store.current_lock(INSTANCE_ID) is not None, "held while the reboot is in flight"
    heal(db)
    wait_until_over(fast, card)
    texts = thread(fast, card)
    assert count(texts, "DBSS accepted") == 1 and count(texts, "back to *ACTIVE*") == 1
    results = [e for e in fast.bot.store.audit() if e.event == "reboot_result"]
    assert [(e.outcome, bool(e.dbss_request_id)) for e in results] == [("accepted", True)]
    assert results[0].dbss_request_id and results[0].dbss_request_id in outcome
    assert len(fast.dbss.reboot_requests()) == 1
    assert fast.bot.store.current_lock(INSTANCE_ID) is None


def test_store_down_while_dbss_answers(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """The whole store refuses writes after the intent: the answer still reaches the thread, from memory."""
    fake_dbss.delays["reboot"] = 0.5
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    try:
        card = reboot(h)
        eventually(lambda: fake_dbss.reboot_requests(), what="the reboot to reach DBSS")
        db = fail_writes(h, "BEFORE INSERT ON audit")
        db.execute("CREATE TRIGGER fault_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'full'); END")
        outcome = eventually(lambda: thread(h, card), what="the outcome", timeout=10)[0]
        assert "DBSS accepted" in outcome
        db.execute("DROP TRIGGER fault_outbox")
        heal(db)
        wait_until_over(h, card)
        assert [e.outcome for e in h.bot.store.audit() if e.event == "reboot_result"] == ["accepted"]
        assert count(thread(h, card), "DBSS accepted") == 1
    finally:
        h.stop()


# --- the defects, one test each ----------------------------------------------------------------------------


def test_card_update_dropped_at_confirm_still_reboots(fast: Harness) -> None:
    """The card update at Confirm loses its connection, twice (more than a client's own retry): DBSS is still
    called, and the lock ends with the reboot."""

    def drop_twice(card: Message) -> None:
        for _ in range(2):
            fast.slack.fault("chat.update", "reset", lambda a: a.get("ts") == card.ts)

    card = reboot(fast, drop_twice)
    wait_until_over(fast, card)
    assert len(fast.dbss.reboot_requests()) == 1
    assert fast.bot.store.current_lock(INSTANCE_ID) is None
    assert all("Something went wrong" not in t for t in fast.slack.hook_texts())


def test_progress_message_deleted_the_end_still_arrives(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The progress message was deleted: its last update fails, and the unhealthy alert is still posted, broadcast."""
    fake_dbss.reboot_polls = 6
    fake_dbss.instances[INSTANCE_ID].end_status = "SHUTOFF"
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    try:
        card = reboot(h)
        progress = eventually(
            lambda: [m for m in fake_slack.thread(INCIDENTS, card.ts) if "Following" in m.text], what="progress"
        )[0]
        with fake_slack.lock:
            del fake_slack.messages[(progress.channel, progress.ts)]  # someone deleted it
        wait_until_over(h, card)
        [alert] = [m for m in fake_slack.thread(INCIDENTS, card.ts) if "SHUTOFF" in m.text]
        assert alert.reply_broadcast and f"<@{ALICE}>" in alert.text
        assert card_line(h, card).startswith(":rotating_light: Rebooted, but ended *SHUTOFF*")
    finally:
        h.stop()


def test_outcome_ratelimited_stays_before_the_end(fast: Harness) -> None:
    """The outcome post answered 429 Retry-After: 1: the thread still reads outcome, progress, end, in that order."""
    card = reboot(fast, lambda _: fast.slack.fault("chat.postMessage", "ratelimited", lambda a: "DBSS" in text_of(a)))
    wait_until_over(fast, card)
    texts = thread(fast, card)
    assert "DBSS accepted" in texts[0] and "back to *ACTIVE*" in texts[-1], texts
    calls = fast.slack.requests_to("/api/chat.postMessage")
    assert calls[-1].at - calls[1].at >= 0.9, "the retry waited for Retry-After"


@pytest.mark.parametrize(
    ("setup", "line"),
    [
        (lambda d: setattr(d.instances[INSTANCE_ID], "reboot_error", (400, "DBSS.10020132", "busy")), ":x:"),
        (lambda d: d.script("reboot", None), ":warning: Outcome unknown"),
        (lambda d: setattr(d.instances[INSTANCE_ID], "end_status", "SHUTOFF"), ":rotating_light:"),
    ],
    ids=["refused", "unknown", "unhealthy"],
)
def test_the_card_never_shows_a_check_mark_on_a_failure(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, setup: Callable[[FakeDbss], object], line: str
) -> None:
    """Refused, unknown, ended unhealthy: the card's last line says so, and no line ever carried a check mark."""
    setup(fake_dbss)
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    try:
        card = reboot(h)
        eventually(lambda: card_line(h, card).startswith(line), timeout=15, what=f"the card to say {line}")
        eventually(lambda: h.bot.outbox.backlog()[0] == 0, what="the outbox to drain")
        with fake_slack.lock:
            shown = [str(v["blocks"][-1]) for v in fake_slack.messages[(card.channel, card.ts)].history[1:]]
        assert all("white_check_mark" not in s for s in [*shown, card_line(h, card)])
    finally:
        h.stop()


def test_late_click_on_a_confirmed_card_changes_nothing(fast: Harness) -> None:
    """A stale tab clicks the same confirmation after it expired: 'already answered'; no 'expired' on the card or
    in the audit trail."""
    card = reboot(fast)
    wait_until_over(fast, card)
    before = card_line(fast, card)
    store = fast.bot.store
    [used] = [e for e in store.audit() if e.event == "confirmed"]
    from bot.core.confirmation import ConfirmationSigner

    signer = ConfirmationSigner.from_secrets(fast.settings.confirmation_secrets, store.confirmation_key)
    _, stale = signer.issue(
        instance_id=INSTANCE_ID,
        requester=ALICE,
        channel=INCIDENTS,
        expires_at=int(time.time()) - 5,
        nonce=used.correlation_id or "",
        generation=store.generation(),
    )
    fast.click("dbss_reboot_confirm", card=card, value=stale)
    assert "already answered" in fast.wait_for_hook(count=1)
    fast.drain()
    assert card_line(fast, card) == before
    assert [e.event for e in store.audit() if e.event == "expired"] == []
    assert len(fast.dbss.reboot_requests()) == 1


def test_a_list_answer_without_instances_ends_nothing(fast: Harness) -> None:
    """Three list answers without 'instances' in a row: an error to wait out, not 'every instance is gone'."""
    fast.dbss.reboot_polls = 8
    card = reboot(fast)
    eventually(lambda: fast.bot.store.active_followups(), what="the follow-up")
    from tests.fakes.http import Answer

    for _ in range(3):
        fast.dbss.script("list", Answer(200, {"total": 0}))  # malformed: no instances key
    wait_until_over(fast, card)
    texts = thread(fast, card)
    assert count(texts, "no longer in the DBSS instance list") == 0, texts
    assert count(texts, "back to *ACTIVE*") == 1


def test_one_good_list_without_the_instance_is_not_gone(fast: Harness) -> None:
    """The instance missing from one good list (and back in the next): not 'gone'."""
    fast.dbss.reboot_polls = 8
    card = reboot(fast)
    eventually(lambda: fast.bot.store.active_followups(), what="the follow-up")
    from tests.fakes.http import Answer

    fast.dbss.script("list", Answer(200, {"instances": [], "total": 0}))
    wait_until_over(fast, card)
    texts = thread(fast, card)
    assert count(texts, "no longer in the DBSS instance list") == 0, texts
    assert count(texts, "back to *ACTIVE*") == 1


def test_instance_gone_after_two_lists(fast: Harness) -> None:
    """An instance missing from two good lists in a row is gone: one alert, the lock released."""
    fast.dbss.reboot_polls = 50
    card = reboot(fast)
    eventually(lambda: fast.bot.store.active_followups(), what="the follow-up")
    fast.dbss.instances.pop(INSTANCE_ID)
    wait_until_over(fast, card)
    assert count(thread(fast, card), "no longer in the DBSS instance list") == 1
    assert fast.bot.store.current_lock(INSTANCE_ID) is None


def test_approval_needs_a_requester_still_allowed(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """Second approver required; the requester is removed from the allow-list before Bob approves: refused."""
    h = Harness(tmp_path, fake_dbss, fake_slack, bot_require_second_approver=True, **FAST)
    try:
        h.command(INSTANCE_ID)
        card = h.wait_for_card()
        h.settings = h.settings.model_copy(update={"bot_allowed_users": ("UBOB",)})
        h.restart()
        h.click("dbss_reboot_confirm", card=card, user="UBOB")
        assert "may no longer request reboots" in h.wait_for_hook(count=1)
        h.drain()
        assert fake_dbss.reboot_requests() == []
    finally:
        h.stop()


def test_card_whose_list_arrives_during_shutdown_is_still_posted(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The list call answers after shutdown began: the card is posted all the same (nothing dropped silently)."""
    fake_dbss.delays["list"] = 1.0
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    h.command(INSTANCE_ID)
    time.sleep(0.2)
    h.stop()
    assert len(h.slack.messages) == 1, "posted before the bot stopped"


def test_interrupted_reboots_all_told_despite_a_network_error(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """Two reboots interrupted by a crash; the first report's connection drops: both threads are told, once each."""
    from bot.core.store import StateStore

    store = StateStore(tmp_path / "state.sqlite3")
    for n, ts in enumerate(("1700000000.000101", "1700000000.000102")):
        store.record(
            "reboot_intent",
            correlation_id=f"ref{n}",
            user_id=ALICE,
            instance_id=INSTANCE_ID,
            channel=INCIDENTS,
            thread_ts=ts,
        )
    store.close()
    for _ in range(2):  # more than a client's own retry
        fake_slack.fault("chat.postMessage", "reset")
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    try:
        for ts in ("1700000000.000101", "1700000000.000102"):
            told = eventually(lambda ts=ts: fake_slack.thread(INCIDENTS, ts), what="the recovery", timeout=10)
            assert len(told) == 1 and "Outcome unknown" in told[0].text
        h.restart()
        time.sleep(0.3)
        for ts in ("1700000000.000101", "1700000000.000102"):
            assert len(fake_slack.thread(INCIDENTS, ts)) == 1, "told once, not again at the next start"
    finally:
        h.stop()


def test_answer_to_a_click_reaches_the_clicker_when_the_response_url_has_expired(fast: Harness) -> None:
    """Bob clicks Alice's card through a response_url Slack no longer takes: the refusal comes as a direct
    message, and the audit trail says so."""
    fast.command(INSTANCE_ID)
    card = fast.wait_for_card()
    fast.slack.expired_hooks.add(str(fast._hook + 1))  # the click's response_url
    fast.click("dbss_reboot_confirm", card=card, user="UBOB")
    [dm] = eventually(lambda: fast.slack.posted("UBOB", "Only the person who asked"), what="the direct message")
    assert "expired_url" in dm.text or "404" in dm.text
    assert fast.dbss.reboot_requests() == []


def test_progress_update_ratelimited_three_times_the_end_still_arrives(fast: Harness) -> None:
    """The progress message's last update answered 429 three times (past a client's own retries): the end is
    still posted once."""

    def limit(_: Message) -> None:
        for _ in range(3):
            fast.slack.fault("chat.update", "ratelimited", lambda a: "Followed" in text_of(a))

    card = reboot(fast, limit)
    wait_until_over(fast, card)
    assert count(thread(fast, card), "back to *ACTIVE*") == 1


def test_an_unreadable_reboot_answer_is_outcome_unknown(fast: Harness) -> None:
    """DBSS answers the reboot with a body that cannot be decoded: 'outcome unknown' in the thread, never
    'something went wrong', and the reboot is not repeated."""
    from tests.fakes.http import Answer

    fast.dbss.script("reboot", Answer(200, raw=b"\x00not gzip", headers={"Content-Encoding": "gzip"}))
    card = reboot(fast)
    [reply] = eventually(lambda: thread(fast, card), what="the outcome")
    assert "Outcome unknown" in reply
    assert all("Something went wrong" not in t for t in fast.slack.hook_texts())
    assert len(fast.dbss.reboot_requests()) == 1


@pytest.mark.parametrize("fault", ["reset_after", "500"])
def test_a_private_answer_that_may_have_arrived_is_not_sent_twice(fast: Harness, fault: str) -> None:
    """Bob's refused click is answered through the response_url, whose connection drops after Slack took it (or
    answers 500): an ephemeral answer cannot be looked up, so it is not sent there again (no second copy); the
    answer comes as a direct message instead, saying the first may not have arrived."""
    fast.command(INSTANCE_ID)
    card = fast.wait_for_card()
    struck = fast.slack.fault("response_url", fault)
    fast.click("dbss_reboot_confirm", card=card, user="UBOB")
    [dm] = eventually(lambda: fast.slack.posted("UBOB", "Only the person who asked"), what="the direct message")
    assert "may not have reached you" in dm.text
    fast.drain()
    assert struck.hit is not None
    assert len([r for r in fast.slack.hooks() if "Only the person who asked" in str(r.json)]) == 1
    assert fast.dbss.reboot_requests() == []


def test_an_ending_written_with_its_audit_entry_is_sent_without_waiting_for_the_poll(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The follower writes an ending with its audit entry, not through the outbox's put: the deliverer still sends it
    at once, not at its next poll; and a deliverer asleep between polls stops at once."""
    from slack_sdk import WebClient

    from bot.core.follow import Follower
    from bot.core.outbox import Outbox
    from bot.core.store import FollowUp, StateStore
    from bot.dbss import DbssClient, TokenAuth
    from bot.slack.delivery import Deliverer
    from bot.slack.followups import SlackFollowUpNotifier
    from tests.conftest import PROJECT_ID
    from tests.fakes.slack import BOT_TOKEN

    store = StateStore(tmp_path / "s.sqlite3")
    outbox = Outbox(store)
    client = WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/", timeout=2, retry_handlers=[])
    deliverer = Deliverer(outbox, client, poll_seconds=3600)
    deliverer.start()
    now = time.time()
    store.add_followup(FollowUp("c1", INSTANCE_ID, ALICE, ALICE, INCIDENTS, "1700000000.000100", now, now + 600))
    with DbssClient(
        base_url=fake_dbss.url, project_id=PROJECT_ID, auth=TokenAuth("good-token"), timeout_seconds=5
    ) as dbss:
        follower = Follower(
            dbss=dbss, store=store, notifier=SlackFollowUpNotifier(outbox), interval_seconds=3600, outbox=outbox
        )
        try:
            while store.active_followups():
                eventually(lambda: outbox.backlog()[0] == 0, what="the progress message sent")  # then asleep
                follower.tick()
            ended = eventually(
                lambda: [m for m in fake_slack.thread(INCIDENTS, "1700000000.000100") if "back to *ACTIVE*" in m.text],
                what="the ending, sent long before the next poll",
            )
            assert len(ended) == 1
            eventually(lambda: outbox.backlog()[0] == 0, what="the ending marked sent")  # asleep again
        finally:
            deliverer.stop(timeout=5)
            store.close()
    assert not deliverer.alive(), "stop woke the deliverer out of its poll"


def test_a_reboot_confirmed_but_never_called_is_told_not_rebooted_at_the_next_start(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    """The bot was killed after the click was claimed and confirmed, before the DBSS call (waiting for the reboot
    pool): at the next start the thread is told it was not rebooted and to run the command again, the card's line
    says so, the lock is released, and DBSS is never called."""
    from bot.core.store import StateStore

    store = StateStore(tmp_path / "state.sqlite3")
    thread_ts = "1700000000.000201"
    taken, _ = store.acquire_lock(
        INSTANCE_ID, owner=ALICE, channel=INCIDENTS, thread_ts=thread_ts, correlation_id="ref1", ttl_seconds=900
    )
    assert taken
    store.record(
        "confirmed",
        correlation_id="ref1",
        user_id=ALICE,
        instance_id=INSTANCE_ID,
        channel=INCIDENTS,
        thread_ts=thread_ts,
        outcome="confirmed",
    )
    store.close()
    with fake_slack.lock:  # the card the thread hangs from
        fake_slack.messages[(INCIDENTS, thread_ts)] = Message(INCIDENTS, thread_ts, "asks to reboot", [])
    h = Harness(tmp_path, fake_dbss, fake_slack, **FAST)
    try:
        [told] = eventually(lambda: fake_slack.thread(INCIDENTS, thread_ts), what="the recovery", timeout=10)
        assert "Not rebooted" in told.text and "restarted before calling DBSS" in told.text
        assert f"/dbss-reboot {INSTANCE_ID}" in told.text
        eventually(lambda: h.bot.store.current_lock(INSTANCE_ID) is None, what="the lock released")
        [result] = [e for e in h.bot.store.audit() if e.event == "reboot_result"]
        assert result.outcome == "not_sent" and result.correlation_id == "ref1"
        h.restart()
        time.sleep(0.3)
        assert len(fake_slack.thread(INCIDENTS, thread_ts)) == 1, "told once, not again at the next start"
        assert fake_dbss.reboot_requests() == []
    finally:
        h.stop()
