"""`python -m bench history`'s smoke run, at a size of seconds, so it cannot rot: start-up (with the migration of a
schema-0 file) and complete reboots through a bot process, with the state left after the retention windows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(out: Path, only: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "history", "--smoke", "--only", only, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nKept.") and f"`python -m bench history --smoke --only {only}` took" in text
    return {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in text.splitlines() if line.startswith("| ")
    }


def test_history_smoke_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nKept.\n")
    rows = run(out, "startup")
    assert "finding 1 unfinished" in rows["start-up, 200 finished reboots (1,600 entries)"]
    assert "first start of a main ff24a36 file (schema 0, migrated), 200 finished reboots" in rows
    rows = run(out, "complete")
    [after] = [value for name, value in rows.items() if name.startswith("non-audit state after the retention")]
    assert after.startswith("used_confirmations 0, locks 0, followups 0, outbox 0, unsettled 0, last_reboots 4")
