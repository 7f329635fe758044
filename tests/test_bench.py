"""The benchmark's smoke run: the same code as `python -m bench`, at a size of seconds, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a soak: the benchmark's storms, twice
def test_smoke_benchmark_writes_its_table(tmp_path: Path) -> None:
    """`python -m bench --smoke --soak 2` runs every measurement and writes the results between the markers."""
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nNotes kept.\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\n\nAfter.\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--soak", "2", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nNotes kept.") and text.rstrip().endswith("After.") and "\nold\n" not in text
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in text.splitlines() if line.startswith("| ")
    }
    assert rows["late or failed acks (>= 3 s or not 200), both runs"] == "0 of 120"
    assert rows["DBSS list calls per poll interval (10 followed, quiet)"] == "1.00"
    assert rows["IAM logins for 10 concurrent reboots"] == "1"
    per_target = rows["DBSS list calls per poll interval per target (3 targets, 3 followed in each, quiet)"]
    calls = dict(part.split(" ") for part in per_target.split(", "))
    assert sorted(calls) == ["ap-southeast-1", "cn-north-4", "eu-west-0"]
    assert all(0.8 <= float(c) <= 1.2 for c in calls.values()), per_target  # one per interval (window edges aside)
    assert rows["bot exit code on SIGTERM"] == "0"
    assert "(10 cards)" in rows["card latency, 10 commands 20 commands/s, DBSS list latency 0 s"]
    assert "(10 cards)" in rows["card latency, 10 commands all at once, DBSS list latency 0.05 s"]
    assert len(rows["RSS of the bot after each of 2 more storms (--soak)"].split(", ")) == 2
    assert "`python -m bench --smoke --soak 2` took" in text
