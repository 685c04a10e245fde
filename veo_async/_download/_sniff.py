"""Is it a video? Checks of the reply's content type and of the body's first bytes.

A type other than ``video/*`` or a generic binary type is refused; so is a body that starts
like HTML, XML, JSON or gzip data whatever its type; and a body with no or a generic type must
start like an MP4/QuickTime file (a box such as ``ftyp`` at offset 4) or a WebM/Matroska file
(the EBML magic).
"""

from __future__ import annotations

#: Types taken at their word (the body must still not look like markup, JSON or gzip).
VIDEO_TYPES = ("video/", "application/mp4")
#: Types that say nothing: the body must start like a video container.
GENERIC_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/binary",
        "application/x-binary",
        "application/download",
        "application/x-download",
        "application/force-download",
        "application/unknown",
    }
)
#: How many decoded bytes are looked at before the first one is written.
SNIFF_BYTES = 512
#: ISO base media (MP4, QuickTime, 3GP) boxes a file may start with, found at offset 4.
_ISO_BOXES = frozenset(
    {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"sidx", b"moof"}
)
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def sniff(head: bytes, *, generic: bool) -> str | None:
    """What the first bytes are, if not acceptable as a video (``None`` when they are)."""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return None
    if head.startswith(_EBML_MAGIC):
        return None
    stripped = head.lstrip(b"\xef\xbb\xbf").lstrip(b" \t\r\n\f")
    lowered = stripped[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if stripped.startswith(b"<"):
        return "HTML or XML markup"
    if stripped.startswith((b"{", b"[")):
        return "JSON"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data without a Content-Encoding"
    if not generic:
        return None  # a video/* type: taken at its word
    if not head:
        return "an empty body"
    if _looks_like_text(head):
        return "plain text"
    if len(head) < 8:
        return f"{len(head)} bytes, too short for a video"
    return f"data that is not an MP4, QuickTime or WebM file (it starts {head[:8].hex()})"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
