"""A PostgreSQL write that timed out is never sent again: the driver and the store re-send nothing, so the caller
hears "unavailable", and what is true afterwards is what the server did with the one statement it got.

A real PostgreSQL is made slower than the store's lock timeout by a lock held from another connection."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bot.core.contract import StateUnavailable
from bot.core.postgres_state import PostgresStore
from tests.conftest import INSTANCE_ID
from tests.harness import ALICE
from tests.stores import Postgres, PostgresServer


def test_a_claim_that_timed_out_behind_a_lock_is_not_sent_again(postgres_server: PostgresServer) -> None:
    """Another connection holds the claims table for longer than the store's lock timeout (5 s): the claim raises
    StateUnavailable after about that long (one statement, cancelled by the server, never re-sent), and once the
    lock is gone the same confirmation can be claimed: the timed-out claim did not land, and nothing ran it again
    behind the caller's back (a client that re-sent it would have made this second claim "already used")."""
    backend = Postgres(postgres_server)
    store = PostgresStore(backend.dsn, name="replica-a")
    holder = psycopg.connect(backend.dsn)
    try:
        holder.execute("LOCK TABLE used_confirmations IN ACCESS EXCLUSIVE MODE")  # a transaction, held open
        started = time.monotonic()
        with pytest.raises(StateUnavailable):
            store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        waited = time.monotonic() - started
        assert 4.5 < waited < 9, f"one statement waits out the lock timeout once ({waited:.1f} s)"
        released = threading.Timer(0.5, holder.rollback)
        released.start()
        released.join()
        assert store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
        assert not store.claim_confirmation("n1", instance_id=INSTANCE_ID, user_id=ALICE, decision="confirm")
    finally:
        holder.close()
        store.close()
