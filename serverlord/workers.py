"""``serverlord serve --workers N``: N server processes on one port.

The parent binds the listening socket, forks the workers (each a whole
serverlord: HTTP, sweepers of its share of the shards, notifier) and watches
them. A worker that is killed or stopped alone is started again; one that
exits with an error (it printed why) stops them all with its exit code.
SIGTERM or Ctrl-C stops every worker, each finishing its requests.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
"""Wait before starting a worker again that a signal killed."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Worker = Callable[[socket.socket, int], int]
"""Runs one worker on the shared socket; returns its exit code."""


class Supervisor:
    """The parent process: starts the workers, restarts the ones that crash."""

    def __init__(self, sock: socket.socket, count: int, worker: Worker) -> None:
        self.sock = sock
        self.count = count
        self.worker = worker
        self.children: dict[int, int] = {}
        """Worker processes by pid, with their index."""
        self.stopping = False
        self.exit_code = 0

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        try:
            for index in range(self.count):
                self._spawn(index)
            while self.children:
                pid, status = os.wait()
                self._reap(pid, status)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                _stop_with_parent(parent)
                code = self.worker(self.sock, index)
            finally:
                # Never return into the parent's code, whatever happened.
                os._exit(code)
        self.children[pid] = index
        log.info(
            "started worker %d (pid %d)",
            index,
            pid,
            extra={"action": "worker_start", "worker": index, "pid": pid},
        )

    def _reap(self, pid: int, status: int) -> None:
        index = self.children.pop(pid, None)
        if index is None:
            return
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            return
        if code > 0:
            # It stopped on purpose and said why: a setting or the store is
            # wrong, and every other worker would hit the same.
            log.error(
                "worker %d (pid %d) exited with %d; stopping",
                index,
                pid,
                code,
                extra={"action": "worker_exit", "worker": index, "code": code},
            )
            self.exit_code = code
            self._stop_all()
            return
        how = "stopped" if code == 0 else f"killed by {signal.Signals(-code).name}"
        log.warning(
            "worker %d (pid %d) was %s; starting it again",
            index,
            pid,
            how,
            extra={"action": "worker_restart", "worker": index, "pid": pid},
        )
        time.sleep(RESTART_PAUSE)
        if not self.stopping:
            self._spawn(index)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        log.info(
            "stopping %d workers on %s",
            len(self.children),
            signal.Signals(sig).name,
            extra={"action": "serve_signal"},
        )
        self._stop_all()

    def _stop_all(self) -> None:
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent dies (kill -9 included).

    Workers left behind would keep the port and the shards, and a new
    ``serve`` could not start. Linux only; elsewhere nothing happens.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        # The parent died before the request took effect.
        os.kill(os.getpid(), signal.SIGTERM)
