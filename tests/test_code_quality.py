"""The code stays as STYLE asks: ruff clean and mypy --strict clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_code_passes_ruff() -> None:
    result = run("ruff", "check", "serverlord", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted_by_ruff() -> None:
    result = run("ruff", "format", "--check", "serverlord", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_passes_mypy_strict() -> None:
    result = run("mypy", "serverlord")
    assert result.returncode == 0, result.stdout + result.stderr
