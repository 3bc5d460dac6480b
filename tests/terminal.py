"""A program run in a pseudo-terminal of a given size, its output read back.

For the TUI's end-to-end test: Textual draws only on a terminal, so the test
gives it one and looks for text in what it drew.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


class Terminal:
    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], size: tuple[int, int]
    ) -> None:
        self.master, slave = pty.openpty()
        columns, lines = size
        fcntl.ioctl(
            slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0)
        )
        self.proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={
                **env,
                "TERM": "xterm-256color",
                "COLUMNS": str(columns),
                "LINES": str(lines),
            },
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    def read_until(self, *texts: bytes, timeout: float = 30.0) -> bool:
        """Read until each of ``texts`` has appeared; False on timeout or exit."""
        end = time.monotonic() + timeout
        while not all(text in self.output for text in texts):
            left = end - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the program ended and closed the terminal
                    return False
                if not chunk:
                    return False
                self.output += chunk
        return True

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float = 15.0) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self.read_until(b"\x00never\x00", timeout=0.2)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        os.close(self.master)
