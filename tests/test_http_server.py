"""Process-level settings of the server: the frozen heap, and correlation IDs without system calls."""

from __future__ import annotations

import gc
import os
import re

from bot.core.reboots import new_correlation_id
from bot.http_server import settle_heap


def test_settle_heap_puts_every_live_object_out_of_the_collectors_reach() -> None:
    """A full collection walks only what was made after start-up (frozen objects are skipped)."""
    keep = [{"n": n} for n in range(5000)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(keep)
        assert not any(obj is keep for obj in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()


def test_correlation_ids_are_short_hex_distinct_and_differ_after_a_fork() -> None:
    ids = {new_correlation_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same sequence as the parent unless random was reseeded at the fork
        os.write(write, new_correlation_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{12}", child) and child != new_correlation_id()
