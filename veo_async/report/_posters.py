"""Poster frames from the MP4 files themselves, through the ``imageio-ffmpeg`` wheel's ffmpeg.

``imageio-ffmpeg`` ships a static ffmpeg binary in a wheel (no system package needed). When it
is not installed, or ffmpeg fails on a file, the report shows no poster for that video and
says why; it never fails because of a poster.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["PosterMaker", "ffmpeg_executable"]

_TIMEOUT = 30.0
_MAX_BYTES = 2 * 1024 * 1024


def ffmpeg_executable() -> tuple[str | None, str | None]:
    """``(path to ffmpeg, None)``, or ``(None, why not)`` when the wheel is missing or broken."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None, (
            "posters skipped: imageio-ffmpeg is not installed "
            "(pip install 'veo-async[report]' adds it)"
        )
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (RuntimeError, OSError) as exc:  # no binary for this platform
        return None, f"posters skipped: imageio-ffmpeg has no usable ffmpeg ({exc})"
    return str(exe), None


class PosterMaker:
    """Makes small JPEG posters (as ``data:`` URIs, so the page stays self-contained)."""

    def __init__(
        self, exe: str | None, *, reason: str | None = None, width: int = 320, workers: int = 4
    ) -> None:
        self.exe = exe
        """The ffmpeg binary, or ``None`` (no posters)."""
        self.reason = reason
        """Why there are no posters (shown on the page), when ``exe`` is ``None``."""
        self.workers = workers
        """ffmpeg processes run at once."""
        self.width = width
        """Poster width in pixels (height follows the aspect ratio)."""
        self.failures = 0
        """Videos ffmpeg could not read."""
        self._lock = threading.Lock()

    def many(self, videos: Sequence[Path]) -> list[str | None]:
        """Posters of ``videos`` (in order), ``workers`` ffmpeg processes at a time."""
        if self.exe is None or not videos:
            return [None] * len(videos)
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            return list(pool.map(self.poster, videos))

    def poster(self, video: Path) -> str | None:
        """A ``data:image/jpeg;base64,...`` URI of an early frame of ``video``, or ``None``."""
        if self.exe is None:
            return None
        # A frame half a second in (the very first is often black); a clip shorter than
        # that falls back to the first frame.
        for offset in ("0.5", "0"):
            data = self._frame(video, offset)
            if data:
                return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        with self._lock:
            self.failures += 1
        return None

    def _frame(self, video: Path, offset: str) -> bytes | None:
        assert self.exe is not None
        command = [
            self.exe,
            "-nostdin",
            "-v",
            "error",
            "-ss",
            offset,
            "-i",
            str(video),
            "-frames:v",
            "1",
            "-vf",
            f"scale={self.width}:-2",
            "-f",
            "image2pipe",
            "-vcodec",
            "mjpeg",
            "-q:v",
            "6",
            "-",
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        out = done.stdout
        if done.returncode != 0 or not out.startswith(b"\xff\xd8") or len(out) > _MAX_BYTES:
            return None
        return out
