"""The acks-first gate: background jobs wait for a quiet moment between requests, never longer than max_wait."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_bolt import BoltResponse

from bot.slack.priority import AcksFirst


def in_dispatch(gate: AcksFirst, release: threading.Event) -> threading.Thread:
    """A request that stays in Bolt's dispatch until `release` is set."""

    def next() -> BoltResponse:
        release.wait(10)
        return BoltResponse(status=200)

    thread = threading.Thread(target=gate.process, kwargs={"req": None, "resp": None, "next": next})
    thread.start()
    time.sleep(0.02)
    return thread


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=2) as work:
        yield work


def test_jobs_wait_while_a_request_is_in_dispatch_and_run_in_order_once_it_is_quiet(pool: Any) -> None:
    gate = AcksFirst(pool, quiet=0.05, max_wait=5.0)
    release = threading.Event()
    request = in_dispatch(gate, release)
    ran: list[tuple[int, float]] = []
    for n in range(3):
        gate.submit(lambda n=n: ran.append((n, time.monotonic())))
    time.sleep(0.3)
    assert ran == []  # held: a request is being acknowledged
    released_at = time.monotonic()
    release.set()
    request.join()
    deadline = time.monotonic() + 3
    while len(ran) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(n for n, _ in ran) == [0, 1, 2]
    assert all(at - released_at >= 0.05 for _, at in ran)  # the quiet period after the last request
    gate.close()


def test_a_job_is_held_no_longer_than_max_wait(pool: Any) -> None:
    gate = AcksFirst(pool, quiet=0.05, max_wait=0.3)
    release = threading.Event()
    request = in_dispatch(gate, release)
    done = threading.Event()
    submitted = time.monotonic()
    gate.submit(done.set)
    assert done.wait(3)
    assert 0.25 <= time.monotonic() - submitted < 2.0  # ran although the request was still in dispatch
    release.set()
    request.join()
    gate.close()


def test_with_no_requests_a_job_runs_at_once(pool: Any) -> None:
    gate = AcksFirst(pool, quiet=0.05, max_wait=5.0)
    done = threading.Event()
    submitted = time.monotonic()
    gate.submit(done.set)
    assert done.wait(3) and time.monotonic() - submitted < 1.0
    gate.close()


def test_close_hands_held_jobs_to_the_pool_and_refuses_new_ones(pool: Any) -> None:
    gate = AcksFirst(pool, quiet=0.05, max_wait=60.0)
    release = threading.Event()
    request = in_dispatch(gate, release)
    done = threading.Event()
    gate.submit(done.set)
    gate.close()  # on SIGTERM: the job in hand still runs, without waiting out max_wait
    assert done.wait(3)
    with pytest.raises(RuntimeError):
        gate.submit(done.set)
    release.set()
    request.join()


class RefusesOnce(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.refused = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not self.refused:
            self.refused = True
            raise RuntimeError("cannot schedule new futures")
        return super().submit(fn, *args, **kwargs)


def test_a_pool_that_refuses_a_job_does_not_stop_later_jobs() -> None:
    with RefusesOnce() as work:
        gate = AcksFirst(work, quiet=0.01, max_wait=1.0)
        gate.submit(lambda: None)  # refused by the pool, and logged
        time.sleep(0.2)
        done = threading.Event()
        gate.submit(done.set)
        assert work.refused and done.wait(3)
        gate.close()


def test_a_thread_waiting_for_quiet_never_takes_the_releasers_wake_up(pool: Any) -> None:
    """The deliverer and the follower wait for a quiet moment on the gate all the time: a job submitted while
    one of them waits is still released within max_wait (a wake-up meant for the releaser once reached such a
    waiter instead, and every later job was held until the process stopped)."""
    gate = AcksFirst(pool, quiet=5.0, max_wait=0.3)
    release = threading.Event()
    request = in_dispatch(gate, release)  # a request in dispatch: the quiet waiter stays parked for `quiet`
    first = threading.Event()
    gate.submit(first.set)
    waiter = threading.Thread(target=gate.wait_quiet, args=(10.0,), daemon=True)
    waiter.start()  # parks while the releaser still holds the first job, so it waits before the releaser does
    assert first.wait(3)
    time.sleep(0.05)  # the releaser is back to waiting for work, behind the quiet waiter
    for n in range(3):
        done = threading.Event()
        submitted = time.monotonic()
        gate.submit(done.set)
        assert done.wait(2.0), f"job {n} still held after 2 s (max_wait 0.3 s)"
        assert time.monotonic() - submitted < 1.5
    release.set()
    request.join()
    gate.close()
    waiter.join(3)
