"""Running ``serverlord ARGS...`` in the test's process, as a user would."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from serverlord.cli import main
from serverlord.config import LEGACY_VARIABLES


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


def runner(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    **env: str,
) -> Run:
    """A `serverlord` on a store in the test's folder, with only ``env`` set."""
    # Nothing from this machine's environment may choose the store.
    for name in [
        n
        for n in os.environ
        if n.startswith(("SERVERLORD_", "PG")) or n in LEGACY_VARIABLES
    ]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SERVERLORD_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(f"SERVERLORD_{name.upper()}", value)
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Result(code, out, err)

    return invoke
