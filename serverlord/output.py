"""How commands print: JSON with ``--json``, else lines for people."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def report(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON when the command was given ``--json``, else text."""
    if args.json:
        print_json(data)
    else:
        print(text)
