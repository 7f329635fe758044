"""Every store backend, opened the same way for the contract suite: SQLite on a temp file, Redis and PostgreSQL as
real servers on loopback. PostgreSQL is one server per test session (initdb takes a second); each test gets a
database of its own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.core.contract import Store

PGBIN = Path("/usr/lib/postgresql/15/bin")
INITDB_OPTIONS = ("-E", "UTF8", "--locale=C.UTF-8", "--no-sync")


class Backend:
    """Opens stores on one backend; `break_` makes every call of a store fail, `mend` undoes it and closes it."""

    name = ""

    def open(self) -> Store:
        raise NotImplementedError

    def break_(self, store: Store) -> None:
        raise NotImplementedError

    def mend(self, store: Store) -> None:
        store.close()


class Sqlite(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.sqlite3"

    def open(self) -> Store:
        from bot.core.store import StateStore

        return StateStore(self.path)

    def break_(self, store: Store) -> None:
        store._db.close()  # type: ignore[attr-defined]  # the file's connection is gone: every call fails


class Redis(Backend):
    name = "redis"

    def __init__(self, directory: Path) -> None:
        from tests.conftest import RedisServer

        self.directory = directory
        self.server = RedisServer(directory)
        self.server.start()

    def open(self) -> Store:
        from bot.core.redis_state import RedisBackedStore

        return RedisBackedStore.from_url(self.directory / "replica.sqlite3", self.server.url)

    def break_(self, store: Store) -> None:
        self.server.stop()


class Postgres(Backend):
    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.database = f"t{uuid.uuid4().hex[:12]}"
        server.admin(f"CREATE DATABASE {self.database}")
        self.dsn = server.dsn(self.database)

    def open(self) -> Store:
        from bot.core.postgres_state import PostgresStore

        return PostgresStore(self.dsn, name="replica-a")

    def break_(self, store: Store) -> None:
        self.server.admin(f"ALTER DATABASE {self.database} ALLOW_CONNECTIONS false")
        self.server.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.database}'")  # noqa: S608

    def mend(self, store: Store) -> None:
        self.server.admin(f"ALTER DATABASE {self.database} ALLOW_CONNECTIONS true")
        store.close()


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway cluster: initdb into a temp directory (owned by `postgres` when run as root: initdb and the
    server refuse root), started on a free loopback port, stopped by its data directory."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pgtest-"))  # not tmp_path: 0700 and root's, postgres cannot enter
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.data, self.log = self.base / "data", self.base / "server.log"
        subprocess.run(
            _as_postgres(
                [str(PGBIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", *INITDB_OPTIONS]
            ),
            check=True,
            capture_output=True,
            cwd=self.base,
        )
        for _ in range(5):  # the port can be taken between the probe and the bind
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = subprocess.run(
                _as_postgres(
                    [str(PGBIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start"]
                ),
                capture_output=True,
                cwd=self.base,
            )
            if started.returncode == 0:
                break
        else:
            raise RuntimeError(self.log.read_text())
        self._lock = threading.Lock()

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=5"

    def admin(self, sql: str) -> list[Any]:
        import psycopg

        with self._lock, psycopg.connect(self.dsn(), autocommit=True) as conn:
            cursor = conn.execute(sql)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            cwd=self.base,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def postgres_available() -> str | None:
    """Why PostgreSQL tests cannot run here (None: they can). CI installs the server (.ci/run), so there they run."""
    if not (PGBIN / "initdb").exists():
        return "PostgreSQL server not installed (apt-get install postgresql; .ci/run does)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    return None


@contextmanager
def _sqlite(request: pytest.FixtureRequest, directory: Path) -> Iterator[Backend]:
    yield Sqlite(directory)


@contextmanager
def _redis(request: pytest.FixtureRequest, directory: Path) -> Iterator[Backend]:
    backend = Redis(directory)
    try:
        yield backend
    finally:
        backend.server.stop()


@contextmanager
def _postgres(request: pytest.FixtureRequest, directory: Path) -> Iterator[Backend]:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    backend = Postgres(server)
    try:
        yield backend
    finally:
        server.admin(f"ALTER DATABASE {backend.database} ALLOW_CONNECTIONS true")
        server.admin(f"DROP DATABASE {backend.database} WITH (FORCE)")


# Each opens its backend for one test: (request, directory) -> a context manager of a Backend.
BACKENDS: list[Any] = [
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_redis, id="redis"),
    pytest.param(_postgres, id="postgresql"),
]
