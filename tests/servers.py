"""Start and stop real servers as child processes on 127.0.0.1 for tests.

Each server fixture uses :func:`free_port`, :class:`ManagedProcess` and
:func:`wait_until`, so a hung or crashed server fails the test with its log
instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: ManagedProcess | None = None) -> None:
    """Poll ``check`` until it is true; fail with ``what`` and the server's log on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s\n{proc.tail() if proc else ''}")


class ManagedProcess:
    """A server process in its own process group, its output in a log file.

    Stopping sends SIGTERM to the whole group, then SIGKILL after ``grace`` seconds,
    so launcher scripts (spark-class, mlflow) never leave orphans behind.
    """

    def __init__(self, name: str, cmd: Sequence[str], log_dir: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(cmd),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group (SIGKILL for crash tests)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the process group and wait for it; close the log."""
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(grace)
        self._log.close()
