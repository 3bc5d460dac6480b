"""The one-file executable for the tests, built once per session.

Use it as a plugin (``pytest_plugins = ("tests.executable",)``): the fixture
``executable`` is, in this order of preference,

- the file named by ``SERVERLORD_EXECUTABLE``, to test a given build;
- ``dist/serverlord`` when the tree is clean and that file names the checked-out
  commit: packaging/build.sh made it from exactly this source;
- a new build by packaging/build.sh with this Python, into ``dist/`` when the
  tree is clean (so that the next session reuses it), else into the session's
  temporary folder, leaving ``dist/`` as it was.

A build takes a minute or two on two cores; a failed build fails the tests
that need it, with the build's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from serverlord import __version__
from tests.test_end_to_end import clean_env

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "packaging" / "build.sh"
BUILD_TIMEOUT = 900
GIVEN = "SERVERLORD_EXECUTABLE"


@dataclass(frozen=True)
class Executable:
    """A built ``serverlord``, and the ``--version`` line it must print."""

    path: Path
    version: str | None
    """None for a build given from outside: its commit is not known here."""

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``serverlord ARGS...`` with only the SERVERLORD_* variables of ``env``."""
        return subprocess.run(
            [str(self.path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(**(env or {})),
        )


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def expected_version() -> tuple[str, bool]:
    """The ``--version`` line of a build of this tree, and whether it is clean."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=normal")
    if commit is None or changes is None:
        return f"serverlord {__version__} (commit unknown)", False
    clean = changes == ""
    suffix = "" if clean else "-dirty"
    return f"serverlord {__version__} (commit {commit}{suffix})", clean


def build(distpath: Path) -> None:
    """Run packaging/build.sh into ``distpath``."""
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--distpath", str(distpath)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=clean_env(PYTHON=sys.executable),
    )
    if done.returncode != 0:
        pytest.fail(
            f"packaging/build.sh failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}{done.stderr[-6000:]}",
            pytrace=False,
        )


def _prints(path: Path, version: str) -> bool:
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60
        )
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == version


@pytest.fixture(scope="session")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Executable:
    given = os.environ.get(GIVEN)
    if given:
        path = Path(given).resolve()
        if not os.access(path, os.X_OK):
            pytest.fail(f"{GIVEN}={given}: not an executable file", pytrace=False)
        return Executable(path, None)

    version, clean = expected_version()
    dist = ROOT / "dist"
    if clean and _prints(dist / "serverlord", version):
        return Executable(dist / "serverlord", version)

    distpath = dist if clean else tmp_path_factory.mktemp("executable")
    build(distpath)
    return Executable(distpath / "serverlord", version)
