"""packaging/serverlord.service: what the unit promises, checked by systemd's
own tools where they are installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "serverlord.service"
INSTALLED_AT = "/usr/local/bin/serverlord"
EXPOSURE_LIMIT = 2.0
"""systemd-analyze security's scale: 0 is locked down, 10 is exposed."""


def directives() -> dict[str, list[str]]:
    """Each directive of the unit with its values, in order."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def test_the_unit_runs_serve_as_a_dynamic_user_with_a_state_directory() -> None:
    unit = directives()

    assert unit["ExecStart"] == [f"{INSTALLED_AT} serve"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["serverlord"]
    assert unit["Environment"] == ["SERVERLORD_DATA_DIR=%S/serverlord"]
    assert unit["EnvironmentFile"] == ["-/etc/serverlord/serverlord.env"]


def test_the_unit_restarts_on_failure_and_takes_sigterm_as_success() -> None:
    unit = directives()

    assert unit["Restart"] == ["on-failure"]
    assert set(unit["SuccessExitStatus"][0].split()) == {"143", "SIGTERM"}
    # Only the bootloader gets SIGTERM; it hands it to the server.
    assert unit["KillMode"] == ["mixed"]


def test_readme_installs_the_unit_where_it_looks_for_the_executable() -> None:
    readme = (ROOT / "README.md").read_text()

    assert f"sudo install -m 0755 dist/serverlord {INSTALLED_AT}" in readme
    assert "packaging/serverlord.service /etc/systemd/system/" in readme
    assert "/etc/serverlord/serverlord.env" in readme


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)
def test_systemd_accepts_the_unit_and_rates_its_sandbox_ok(tmp_path: Path) -> None:
    # verify wants ExecStart's file to exist: any executable stands in for it.
    unit = tmp_path / "serverlord.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_AT, "/bin/true"))

    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (verify.returncode, verify.stderr) == (0, "")
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found[1]) <= EXPOSURE_LIMIT
