"""AcksFirst's releaser is woken by every job it must release, whoever else waits on the same condition."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from bot.slack.priority import AcksFirst


class RunAtOnce:
    """An executor that runs each job on the caller's thread (the releaser's) and records it."""

    def __init__(self) -> None:
        self.ran = 0

    def submit(self, job: Callable[[], object]) -> Future[object]:
        job()
        self.ran += 1
        done: Future[object] = Future()
        done.set_result(None)
        return done


def test_a_job_is_released_while_other_threads_wait_for_a_quiet_moment() -> None:
    """Background loops (deliverer, follower, retention) wait in wait_quiet on the releaser's condition: a
    submit's wake-up must reach the releaser, not one of them, or every later card waits forever."""
    work = RunAtOnce()
    acks = AcksFirst(work, quiet=0.02, max_wait=0.01)  # type: ignore[arg-type]
    stop = threading.Event()

    def in_dispatch() -> None:  # a request being acknowledged all along: wait_quiet has to wait
        acks.process(req=None, resp=None, next=lambda: stop.wait())  # type: ignore[arg-type]

    def background() -> None:
        while not stop.is_set():
            acks.wait_quiet(0.05)

    threading.Thread(target=in_dispatch, daemon=True).start()

    loops = [threading.Thread(target=background, daemon=True) for _ in range(3)]
    for t in loops:
        t.start()
    try:
        for n in range(300):
            released = threading.Event()
            acks.submit(released.set)
            assert released.wait(2.0), f"job {n} was never released"
    finally:
        stop.set()
        acks.close()
