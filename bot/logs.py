"""Logging: one JSON object per line, with the correlation ID and DBSS request ID when there is one."""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed with `extra=` and belongs in the line.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key == "audit" and isinstance(value, dict):
                line.update(value)  # the audit fields of the event, flattened: correlation_id, dbss_request_id...
            else:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    """One handler on the root logger, at `level` (LOG_LEVEL)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs each request line at INFO; useful, but noisy at 200 follow-ups: warnings only, unless DEBUG is
    # asked for. (httpcore stays at INFO whatever the level: bot/dbss holds it there, its DEBUG prints headers.)
    logging.getLogger("httpx").setLevel(logging.INFO if level <= logging.DEBUG else logging.WARNING)


def dump_stacks_on_signal(signum: int = signal.SIGUSR1) -> None:
    """`kill -USR1 <pid>`: every thread's stack to stderr, and the process goes on (for a bot that seems stuck).

    faulthandler writes from C, without the interpreter lock: it works even when every Python thread waits. A
    handler already there (gunicorn's worker has one) still runs after; the default one (ending the process)
    does not."""
    previous = signal.getsignal(signum)
    chain = callable(previous)
    faulthandler.register(signum, file=sys.stderr, all_threads=True, chain=chain)
