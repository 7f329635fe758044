"""Every module imports on its own, first: an import cycle shows only in the order that trips it (Socket Mode's
start-up imported bot.core before bot.dbss and failed so)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One interpreter for all of them: before each import every `bot` module is forgotten, so each module is the
# first of the project's to load (what a cycle needs); the libraries it uses stay loaded, as they hold no cycle
# of ours. A fresh interpreter per module took 48 start-ups, about 6 s of CPU.
FIRST_OF_EACH = """
import importlib, json, sys, traceback
failed = []
for module in json.loads(sys.argv[1]):
    for name in [n for n in sys.modules if n == "bot" or n.startswith("bot.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except BaseException:
        failed.append([module, traceback.format_exc()[-500:]])
print(json.dumps(failed))
"""


def modules() -> list[str]:
    found = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_imports_first() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_OF_EACH, json.dumps(modules())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    failed = json.loads(done.stdout)
    assert len(modules()) > 40
    assert failed == []
