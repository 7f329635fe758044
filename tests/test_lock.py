"""uv.lock agrees with pyproject.toml, the requirements/ files are exported from it, and every install uses them.

uv.lock is the lock: every direct and transitive dependency, its version and the hashes of its files. pip installs
from its exports (requirements/test.txt for CI and the README's set-up, requirements/runtime.txt for the image),
in hash-checking mode. uv runs offline here, with a cache of its own: nothing is resolved or downloaded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parent.parent

# What each exported file holds: the uv export arguments it was written with (its own header says so too).
EXPORTS = {
    "requirements/runtime.txt": ["--no-emit-project"],
    "requirements/test.txt": ["--no-emit-project", "--extra", "test"],
}


def uv(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_uv_bin(), *args, "--offline", "--no-progress", "--no-config", "--python", sys.executable],
        cwd=cwd,
        env={"UV_CACHE_DIR": str(cache), "UV_PYTHON_DOWNLOADS": "never", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def without_header(text: str) -> list[str]:
    """The file less its header comment (which names the output path it was written to)."""
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return lines


def test_the_lock_agrees_with_pyproject(tmp_path: Path) -> None:
    """`uv lock --check` finds uv.lock up to date with pyproject.toml's dependencies and ranges."""
    result = uv("lock", "--check", cwd=ROOT, cache=tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_lock_check_fails_when_pyproject_asks_for_something_else(tmp_path: Path) -> None:
    """The check is live: a range the locked version is outside of (redis 7 while 8 is locked) fails it."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "uv.lock", project)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"redis>=8,<9"' in pyproject
    (project / "pyproject.toml").write_text(pyproject.replace('"redis>=8,<9"', '"redis>=7,<8"'))
    result = uv("lock", "--check", cwd=project, cache=tmp_path / "cache")
    assert result.returncode != 0
    # Out of date: uv resolves again, which offline it cannot (and not a missing interpreter or a broken file).
    assert "No solution found when resolving dependencies" in result.stderr, result.stderr


@pytest.mark.parametrize("path", sorted(EXPORTS))
def test_requirements_files_are_the_lock_exported(path: str, tmp_path: Path) -> None:
    """requirements/*.txt are what `uv export --frozen` writes from uv.lock today: same packages, versions, hashes."""
    result = uv("export", "--frozen", "--format", "requirements-txt", *EXPORTS[path], cwd=ROOT, cache=tmp_path)
    assert result.returncode == 0, result.stderr
    assert without_header((ROOT / path).read_text()) == without_header(result.stdout)
    assert " ".join(EXPORTS[path]) in (ROOT / path).read_text().splitlines()[1]  # its header says how to remake it


@pytest.mark.parametrize("path", sorted(EXPORTS))
def test_every_locked_package_is_pinned_with_hashes(path: str) -> None:
    """Each requirement is `name==version` followed by at least one sha256: pip's hash-checking mode needs both."""
    text = (ROOT / path).read_text()
    entries = re.split(r"\n(?=\S)", "\n".join(without_header(text)))
    pinned = [e for e in entries if not e.startswith("#")]
    assert pinned
    for entry in pinned:
        assert re.match(r"[a-z0-9-]+==\S+( ; .*)? \\$", entry.splitlines()[0]), entry
        assert "--hash=sha256:" in entry, entry
    assert not re.search(r"^-e |^\.|file:", text, re.MULTILINE)  # nothing from a local path: the bot is not in it


def test_direct_dependencies_admit_only_the_tested_major() -> None:
    """Every range in pyproject.toml has an upper bound: a new major reaches the bot through a change here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    for line in requirements:
        specifiers = Requirement(line).specifier
        assert any(s.operator == "<" for s in specifiers), line
        assert any(s.operator == ">=" for s in specifiers), line


def test_ci_and_the_readme_install_the_locked_test_set_with_hashes() -> None:
    """.ci/run installs requirements/test.txt in hash-checking mode, and the README's set-up is the same two
    commands: a venv, then that one install."""
    ci = (ROOT / ".ci/run").read_text()
    installs = [line for line in ci.splitlines() if "pip install" in line]
    assert installs == [".venv/bin/python -m pip install --quiet --require-hashes -r requirements/test.txt"]
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("Set-up, two commands", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert setup.splitlines() == [
        "python3 -m venv .venv",
        ".venv/bin/pip install --require-hashes -r requirements/test.txt",
    ]


def test_the_image_installs_the_locked_runtime_set_with_hashes() -> None:
    """The Dockerfile's one pip install is requirements/runtime.txt in hash-checking mode: nothing unlocked,
    no package built from source (the bot is copied as source, as CI runs it)."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    installs = [re.sub(r"\s+", " ", run) for run in runs if "pip install" in run]
    assert installs == [
        "RUN python -m venv /opt/venv && /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes"
        " -r requirements/runtime.txt"
    ]
    assert "COPY requirements/runtime.txt ./requirements/" in dockerfile
