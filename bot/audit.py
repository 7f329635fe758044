"""`python -m bot audit`: the audit trail as JSON Lines or CSV on stdout, for compliance exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

from bot.config import StateSettings
from bot.core.redis_state import AUDIT_STREAM, CLOCK_SKEW_SECONDS, PREFIX, SharedTrail, redis_client
from bot.core.store import AUDIT_FIELDS, AuditEntry, StateStore, StateUnavailable

Format = Literal["jsonl", "csv"]
COLUMNS = ("at", "at_epoch", *AUDIT_FIELDS[1:], "replica")  # the audit trail's own fields, `at` also as epoch
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def parse_since(text: str) -> float:
    """An ISO date (`2026-11-01`, midnight UTC) or date-time (UTC unless it names an offset), as a Unix time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since: {text!r} is not an ISO date or date-time (e.g. 2026-11-01 or 2026-11-01T08:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def row(entry: AuditEntry) -> dict[str, str | float | None]:
    """One entry as exported: the time as ISO-8601 UTC and as a Unix time, then the fields."""
    at = datetime.fromtimestamp(entry.at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {
        "at": at,
        "at_epoch": entry.at,
        "correlation_id": entry.correlation_id,
        "event": entry.event,
        "user_id": entry.user_id,
        "instance_id": entry.instance_id,
        "channel": entry.channel,
        "thread_ts": entry.thread_ts,
        "outcome": entry.outcome,
        "dbss_request_id": entry.dbss_request_id,
        "detail": entry.detail,
        "region": entry.region,
        "replica": entry.replica,
    }


def spreadsheet_safe(value: str | float | None) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading formula character gets a quote before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write(entries: Iterable[AuditEntry], out: TextIO, fmt: Format) -> int:
    """Write the entries; how many were written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for entry in entries:
            values = row(entry)
            writer.writerow([spreadsheet_safe(values[name]) for name in COLUMNS])
            count += 1
    else:
        for entry in entries:
            out.write(json.dumps(row(entry), ensure_ascii=False) + "\n")
            count += 1
    out.flush()
    return count


def redacted(url: str) -> str:
    """A Redis URL without its password, for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def run(
    settings: StateSettings,
    out: TextIO,
    err: TextIO,
    *,
    since: float | None,
    instance_id: str | None,
    fmt: Format,
) -> int:
    """Export the trail: PostgreSQL's with DATABASE_URL, the shared one in Redis with REDIS_URL, else the SQLite
    file at BOT_STATE_PATH."""
    if settings.database_url is not None:
        return _from_postgres(settings.database_url.get_secret_value(), out, err, since, instance_id, fmt)
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
        client = redis_client(url, timeout_seconds=10)
        try:
            trail = SharedTrail(client, PREFIX + AUDIT_STREAM)
            # The stream is in the order Redis received the entries; a replica's clock may be a little behind.
            start = since - CLOCK_SKEW_SECONDS if since is not None else None
            write(_matching(trail.entries(since=start), since, instance_id), out, fmt)
        except StateUnavailable as error:
            err.write(
                f"Cannot read the shared audit trail at {redacted(url)}: {error.__cause__ or error}\n"
                "Each replica keeps a copy of the entries it wrote: unset REDIS_URL and point BOT_STATE_PATH at its "
                "state file to export that copy.\n"
            )
            return 1
        finally:
            client.close()
        return 0
    path = Path(settings.bot_state_path)
    if not path.is_file():
        err.write(f"No state file at {path}: set BOT_STATE_PATH to the bot's state file (or REDIS_URL).\n")
        return 1
    store = StateStore(path)
    try:
        write(store.entries(since=since, instance_id=instance_id), out, fmt)
    except StateUnavailable as error:
        err.write(f"Cannot read the audit trail in {path}: {error}\n")
        return 1
    finally:
        store.close()
    return 0


def _from_postgres(
    url: str, out: TextIO, err: TextIO, since: float | None, instance_id: str | None, fmt: Format
) -> int:
    from bot.core.postgres_state import PostgresStore

    try:
        store = PostgresStore(url)
        try:
            write(store.entries(since=since, instance_id=instance_id), out, fmt)
        finally:
            store.close()
    except StateUnavailable as error:
        err.write(f"Cannot read the audit trail at {redacted(url)}: {str(error).replace(url, redacted(url))}\n")
        return 1
    return 0


def _matching(entries: Iterator[AuditEntry], since: float | None, instance_id: str | None) -> Iterator[AuditEntry]:
    return (
        e for e in entries if (since is None or e.at >= since) and (instance_id is None or e.instance_id == instance_id)
    )
