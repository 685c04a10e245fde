"""The file side of a download: the checked, hashed temporary file and the atomic move.

:class:`Sink` writes the decoded body into a temporary ``.<name>.<hex>.part`` file in the
target's folder, enforcing the size cap and sniffing the first bytes before any is written;
:func:`move_into_place` then links it to the target (``os.link`` refuses to replace a file)
or, when overwriting was asked for, replaces it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .._exceptions import DownloadIntegrityError
from ._errors import EDQUOT, disk_error
from ._sniff import SNIFF_BYTES, sniff

logger = logging.getLogger("veo_async")


@dataclass(frozen=True)
class DownloadedVideo:
    """A finished download: where it is, how big, its SHA-256, and where it came from."""

    path: Path
    """The final file."""
    size: int
    """Bytes written (after decoding any ``Content-Encoding``)."""
    sha256: str
    """Hex SHA-256 of the file."""
    url: str
    """The video URL it was downloaded from."""


class Sink:
    """Checks, hashes and writes the decoded body; holds back its first bytes to sniff them."""

    def __init__(self, url: str, folder: Path, max_bytes: int, *, generic: bool, ctype: str):
        self.url = url
        self.folder = folder
        self.max_bytes = max_bytes
        self.generic = generic
        self.ctype = ctype
        self.size = 0
        self.file: Any = None
        self._digest = hashlib.sha256()
        self._head: bytearray | None = bytearray()

    async def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.max_bytes:
            raise DownloadIntegrityError(
                f"video exceeds the {self.max_bytes}-byte cap", url=self.url
            )
        self._digest.update(piece)
        if self._head is None:
            await self._write(piece)
            return
        self._head += piece
        if len(self._head) >= SNIFF_BYTES:
            await self._release_head()

    async def _release_head(self) -> None:
        head = bytes(self._head or b"")
        self._head = None
        problem = sniff(head, generic=self.generic)
        if problem is not None:
            shown = self.ctype or "no content-type"
            raise DownloadIntegrityError(
                f"expected a video, got {problem} ({shown}); not saved", url=self.url
            )
        await self._write(head)

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self.file.write(data)
        except OSError as exc:
            raise disk_error(exc, self.folder, self.url, "write the video") from exc

    async def close(self) -> None:
        """Sniff a short body too, then flush and fsync."""
        if self._head is not None:
            await self._release_head()
        try:
            await self.file.flush()
            await anyio.to_thread.run_sync(os.fsync, self.file.wrapped.fileno())
        except OSError as exc:
            raise disk_error(exc, self.folder, self.url, "write the video") from exc

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and refuses to replace an existing file
    except FileExistsError:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, EDQUOT):
            raise
        # file systems without hard links: best effort check-then-rename
        if target.exists():
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, target)


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # never mask the real error; say what was left behind
        logger.warning("could not remove the temporary file %s: %s", path, exc)
