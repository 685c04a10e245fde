"""A hostile HTTP server on loopback whose misbehaviour each test scripts.

It speaks raw HTTP/1.1 over a real socket (a thread per connection, so it serves asyncio and
trio tests alike), and lets a test answer each request with anything at all: bodies that fail
to decode, bodies sent a byte at a time or never ending, lying ``Content-Length`` values,
malformed status lines, redirect loops, echoed secrets, wrong ids, any ``Retry-After``.

Every request is recorded (method, path, query, headers, body), so a test can assert the
invariant that matters (how many creates reached the server, where the key went)::

    def script(req: Recorded) -> Reply:
        if req.method == "POST":
            return broken_gzip(generation("g1"))  # billed, reply unreadable
        return Reply.json(generation("g1", "completed"))

    with HostileServer(script) as server:
        client = AsyncVeoClient("k", base_url=server.url)
        ...
        assert server.count("POST") == 1

``Reply.raw`` sends bytes verbatim (no status line is added); ``Reply.chunks`` with
``interval`` sends the body in timed pieces; ``Reply.endless`` repeats ``chunks`` until the
client goes away or the server stops. ``content_length`` overrides the header (``None`` drops
it). The server never keeps a connection alive: each reply closes its connection unless
``keep_alive=True``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "AUTO",
    "HostileServer",
    "Recorded",
    "Reply",
    "broken_gzip",
    "deep_json",
    "generation",
    "gzipped",
]

AUTO: Any = object()
"""``content_length=AUTO`` (the default): the true length of ``body``."""


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def path(self) -> str:
        """The path without the query."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Reply:
    """What to send back; see the module docstring."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_length: Any = AUTO
    chunks: Iterable[bytes] | None = None
    interval: float = 0.0
    endless: bool = False
    raw: bytes | None = None
    delay: float = 0.0
    keep_alive: bool = False

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: Iterable[tuple[str, str]] = (), **kw: Any
    ) -> Reply:
        """A JSON reply."""
        hdrs = [("Content-Type", "application/json"), *headers]
        return cls(status=status, headers=hdrs, body=json.dumps(obj).encode(), **kw)


def generation(
    gid: str, status: str = "queued", video_url: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A generation object as the API returns it."""
    out: dict[str, Any] = {"id": gid, "status": status, **extra}
    if video_url is not None:
        out["video"] = {"url": video_url}
    return out


def broken_gzip(obj: Any) -> Reply:
    """A 200 JSON reply that claims ``Content-Encoding: gzip`` but whose body is not gzip."""
    body = json.dumps(obj).encode()
    return Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        body=b"\x1f\x8b\x08\x00garbage" + body,
    )


def gzipped(body: bytes, content_type: str = "application/json") -> Reply:
    """A correctly gzip-encoded reply."""
    return Reply(
        headers=[("Content-Type", content_type), ("Content-Encoding", "gzip")],
        body=gzip.compress(body),
    )


def deep_json(depth: int = 100_000) -> Reply:
    """A 200 reply of JSON nested deeply enough to raise ``RecursionError`` in a parser."""
    return Reply(
        headers=[("Content-Type", "application/json")],
        body=b'{"id": "g", "x": ' + b"[" * depth + b"]" * depth + b"}",
    )


_REASONS = {200: "OK", 301: "Moved", 302: "Found", 404: "Not Found", 429: "Too Many Requests"}


class HostileServer:
    """A scripted HTTP/1.1 server on ``127.0.0.1`` (a context manager)."""

    def __init__(self, script: Callable[[Recorded], Reply]) -> None:
        self.script = script
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="hostile-accept", daemon=True)

    def __enter__(self) -> HostileServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; endless bodies end, open connections close."""
        self._stop.set()
        self._accept.join(5)
        for t in list(self._threads):
            t.join(5)
        self._sock.close()

    # ------------------------------------------------------------------ queries

    def received(self, method: str | None = None) -> list[Recorded]:
        """The requests received so far (of one method, if given)."""
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def count(self, method: str | None = None) -> int:
        """How many requests (of one method) reached the server."""
        return len(self.received(method))

    # ------------------------------------------------------------------ serving

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _read_request(self, conn: socket.socket, buf: bytearray) -> Recorded | None:
        while b"\r\n\r\n" not in buf:
            data = self._recv(conn)
            if not data:
                return None
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = bytearray(rest)
        while len(body) < length:
            data = self._recv(conn)
            if not data:
                return None
            body += data
        buf[:] = body[length:]
        rec = Recorded(method, target, headers, bytes(body[:length]), time.monotonic())
        with self._lock:
            self.requests.append(rec)
        return rec

    def _recv(self, conn: socket.socket) -> bytes:
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                return conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return b""

    def _handle(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stop.is_set():
                rec = self._read_request(conn, buf)
                if rec is None:
                    return
                reply = self.script(rec)
                if not self._send(conn, reply) or not reply.keep_alive:
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _pause(self, seconds: float) -> bool:
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()

    def _send(self, conn: socket.socket, reply: Reply) -> bool:
        if reply.delay and not self._pause(reply.delay):
            return False
        if reply.raw is not None:
            conn.sendall(reply.raw)
            return True
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        head += [f"{k}: {v}" for k, v in reply.headers]
        streaming = reply.chunks is not None or reply.endless
        length = reply.content_length
        if length is AUTO:
            length = None if streaming else len(reply.body)
        if length is not None:
            head.append(f"Content-Length: {length}")
        head.append("Connection: keep-alive" if reply.keep_alive else "Connection: close")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if not streaming:
            conn.sendall(reply.body)
            return True
        for piece in _pieces(reply):
            if not self._pause(reply.interval):
                return False
            try:
                conn.sendall(piece)
            except OSError:
                return False
        return True


def _pieces(reply: Reply) -> Iterator[bytes]:
    if reply.body:
        yield reply.body
    parts = list(reply.chunks or [b" "])
    while True:
        yield from parts
        if not reply.endless:
            return
