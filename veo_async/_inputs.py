"""Reading batch inputs: prompt files (``.txt``, ``.jsonl``, ``.csv``, stdin) with line numbers.

Every input is validated into a request model *before* anything is sent, and every problem is
reported with its file and line number, so a batch with one bad line spends nothing.

Formats:

* ``txt``: one prompt a line; blank lines and lines starting with ``#`` are skipped.
* ``jsonl``: one JSON object a line, any request field as a key (``prompt``, ``model``,
  ``duration``, ... and ``extra_body`` for fields the SDK does not model).
* ``csv`` / ``tsv``: a header row naming request fields; one request a row; empty cells are
  left out. Text cells are converted to the field's type (``duration`` ``6`` becomes 6).

The format is read from the *content*, not only from the file name (``auto``, the default):
a UTF-8 byte order mark is dropped; ``.jsonl``/``.ndjson``, ``.csv`` and ``.tsv`` files are
parsed as named (a ``.csv`` file may use ``;``, tab or ``|`` between cells); anything else
(``.txt``, ``.csv.txt``, no suffix, stdin) is sniffed: a first content line that is a JSON
value means JSON Lines, a header with a ``prompt`` column (split by ``,``, tab, ``;`` or
``|``) means CSV/TSV, and plain lines are prompts. Input that could be either (a header that
names request fields but no ``prompt`` column, a JSON-looking line that does not parse, JSON
objects or tabs among text lines) is refused with the file, the line and the ``--format`` to
pass, because a wrong guess would send header rows or raw JSON as paid prompts.

Media fields (``image_url``, ``tail_image_url``, ``last_image_url``, ``image_urls``,
``video_url``) accept a URL, a data URI, or a local file path, which is read and turned into
a base64 data URI. A path in an input file is relative to that file's folder and must stay
inside it (after resolving symlinks and ``..``) unless ``allow_media_outside=True`` (the
CLI's ``--allow-media-outside``): an input file from elsewhere cannot make a request carry
``/etc/shadow`` or a key from your home folder.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import mimetypes
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from ._exceptions import RequestValidationError
from ._input_formats import (
    InputError,
    InputFormat,
    InputProblem,
    Sniffed,
    _Record,
    detect_format,
    read_records,
    sniff_format,
)
from ._models import MODEL_REQUESTS, VideoRequest, build_request

__all__ = [
    "MEDIA_FIELDS",
    "InputError",
    "InputFormat",
    "InputProblem",
    "ParsedInput",
    "Sniffed",
    "body_hash",
    "check_model",
    "describe_field_error",
    "convert_text_value",
    "detect_format",
    "load_inputs",
    "media_to_data_uri",
    "parse_field_assignment",
    "read_records",
    "redact_body",
    "request_fingerprint",
    "sniff_format",
]

#: Request fields that take an image or a video: a URL, a data URI, or a local file path.
MEDIA_FIELDS = frozenset(
    {"image_url", "tail_image_url", "last_image_url", "image_urls", "video_url"}
)
_MAX_MEDIA_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class ParsedInput:
    """One validated input: its line number and its request."""

    line: int
    """1-based line number in the input file (where the record starts)."""
    request: VideoRequest
    """The validated request."""


# --------------------------------------------------------------------------- values


def _field_types(cls: type[VideoRequest] | None, name: str) -> list[object] | None:
    """Top-level accepted types of a field: classes, and Literal values as their types."""
    if cls is None:
        return None
    info = cls.model_fields.get(name)
    if info is None:
        return None
    out: list[object] = []
    stack: list[object] = [info.annotation]
    while stack:
        ann = stack.pop()
        origin = typing.get_origin(ann)
        if origin is Literal:
            out.extend(type(v) for v in typing.get_args(ann))
        elif origin is typing.Union or origin is types.UnionType:
            stack.extend(typing.get_args(ann))
        elif origin is not None:
            out.append(origin)  # list[str] -> list
        elif ann is not type(None):
            out.append(ann)
    return out


def convert_text_value(model: str | None, name: str, text: str) -> Any:
    """Convert a text value (a CSV cell, a ``--field`` value) to what field ``name`` expects.

    Text fields keep the text as given; other fields take JSON (``6``, ``true``, ``["a"]``);
    a list field also takes a single value, and a boolean field also ``yes``/``no``.
    """
    accepted = _field_types(MODEL_REQUESTS.get(model or ""), name)
    if accepted is not None and str in accepted:
        return text
    stripped = text.strip()
    if accepted is not None and bool in accepted and stripped.lower() in {"yes", "no", "on", "off"}:
        return stripped.lower() in {"yes", "on"}
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        value = stripped
    if accepted is not None and list in accepted and not isinstance(value, list):
        return [value]
    return value


def parse_field_assignment(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` (the ``--field`` option); the value is JSON when it parses as JSON."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _is_remote(value: str) -> bool:
    return value.startswith("data:") or "://" in value


def media_to_data_uri(
    value: str, base_dir: Path, *, field: str = "image_url", confine_to: Path | None = None
) -> str:
    """A URL or data URI unchanged; a local file path read into a base64 data URI.

    A relative path is taken relative to ``base_dir``. With ``confine_to``, the file (after
    resolving symlinks and ``..``) must lie inside that folder. Raises ``ValueError`` naming
    the file when it cannot be read or lies outside.
    """
    if _is_remote(value):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if confine_to is not None:
        try:
            real = path.resolve(strict=False)
            root = confine_to.resolve(strict=False)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise ValueError(f"{field}: cannot resolve {value!r}: {exc}") from None
        if not real.is_relative_to(root):
            raise ValueError(
                f"{field}: {value!r} is outside the input file's folder {root}; an input file "
                "may only name local media in its own folder (move the file there, or pass "
                "--allow-media-outside if you trust this input file)"
            )
        path = real
    try:
        size = path.stat().st_size
        if size > _MAX_MEDIA_BYTES:
            raise ValueError(f"{field}: {value!r} is {size} bytes, over the 50 MB limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{field}: {value!r} is neither a URL nor an existing file") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise ValueError(f"{field}: cannot read {value!r}: {exc.strerror or exc}") from None
    mime = mimetypes.guess_type(path.name)[0]
    if mime is None:
        mime = "video/mp4" if field == "video_url" else "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _resolve_media(
    fields: dict[str, Any], base_dir: Path, confine_to: Path | None
) -> dict[str, Any]:
    out = dict(fields)
    for name in MEDIA_FIELDS & out.keys():
        value = out[name]
        if isinstance(value, str):
            out[name] = media_to_data_uri(value, base_dir, field=name, confine_to=confine_to)
        elif isinstance(value, list):
            out[name] = [
                media_to_data_uri(v, base_dir, field=name, confine_to=confine_to)
                if isinstance(v, str)
                else v
                for v in value
            ]
    return out


# --------------------------------------------------------------------------- loading


def check_model(model: str) -> None:
    """Raise :class:`RequestValidationError` for a model id the SDK does not know.

    The error entry carries the id (``received``) and the known ids (``allowed``), so
    :func:`describe_field_error` can suggest the closest one.
    """
    if model in MODEL_REQUESTS:
        return
    known = sorted(MODEL_REQUESTS)
    raise RequestValidationError(
        f"unknown model {model!r}; known models: {', '.join(known)}",
        errors=[
            {"field": "model", "message": "unknown model", "received": model, "allowed": known}
        ],
    )


def describe_field_error(err: Mapping[str, Any]) -> str:
    """One validation problem as text: the field, what is wrong, the value, what is allowed.

    An unknown model names the closest known one and lists them all; allowed values are
    listed once (not when the message already names them).
    """
    field = err.get("field", "?")
    message = str(err.get("message", "invalid"))
    allowed = err.get("allowed")
    if field == "model" and allowed:
        received = str(err.get("received", ""))
        close = difflib.get_close_matches(received, [str(a) for a in allowed], n=1, cutoff=0.5)
        text = f"model: unknown model {received!r}" if received else "model: unknown model"
        if close:
            text += f"; did you mean {close[0]!r}?"
        return text + f" Known models: {', '.join(map(str, allowed))} (see `veo-async models`)"
    text = f"{field}: {message}"
    if "received" in err:
        text += f" (got {err['received']!r})"
    if allowed and not all(repr(a) in message or str(a) in message for a in allowed):
        text += f"; allowed: {', '.join(repr(a) for a in allowed)}"
    return text


def _describe(exc: RequestValidationError) -> str:
    if not exc.errors:
        return exc.message
    return "; ".join(describe_field_error(err) for err in exc.errors)


def _row_model(row: dict[str, Any], fields: dict[str, Any]) -> str:
    """The model of a row: its own ``model``, else the default; checked to be known."""
    model = row.pop("model", None)
    if model is None:
        model = fields.pop("model", "veo2")
    else:
        fields.pop("model", None)
    if not isinstance(model, str) or not model.strip():
        raise RequestValidationError(
            "model must be a non-empty string",
            errors=[{"field": "model", "message": "must be a non-empty string"}],
        )
    model = model.strip()
    check_model(model)
    return model


def _row_extra(row: dict[str, Any], text_values: bool) -> dict[str, Any] | None:
    """A row's own ``extra_body``: an object (from text cells: a JSON object)."""
    row_extra = row.pop("extra_body", None)
    if text_values and isinstance(row_extra, str):
        try:
            row_extra = json.loads(row_extra)
        except json.JSONDecodeError:
            raise RequestValidationError(
                "extra_body must be a JSON object",
                errors=[{"field": "extra_body", "message": "must be a JSON object"}],
            ) from None
    if row_extra is not None and not isinstance(row_extra, dict):
        raise RequestValidationError(
            "extra_body must be an object",
            errors=[{"field": "extra_body", "message": "must be a JSON object"}],
        )
    return row_extra


def _prompt_of(fields: dict[str, Any]) -> str:
    prompt = fields.pop("prompt", None)
    if prompt is None:
        raise RequestValidationError(
            "no prompt", errors=[{"field": "prompt", "message": "missing (empty prompt)"}]
        )
    if not isinstance(prompt, str):
        raise RequestValidationError(
            "prompt must be text",
            errors=[{"field": "prompt", "message": f"must be text, got {type(prompt).__name__}"}],
        )
    return prompt


def _build(
    record: _Record,
    defaults: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None,
    base_dir: Path,
    confine_to: Path | None,
) -> VideoRequest:
    fields = {k: v for k, v in defaults.items() if v is not None}
    row = dict(record.fields)
    model = _row_model(row, fields)
    row_extra = _row_extra(row, record.text_values)
    if record.text_values:
        row = {
            k: (convert_text_value(model, k, v) if isinstance(v, str) and k != "prompt" else v)
            for k, v in row.items()
        }
    # Only the row's own media paths come from the input file; defaults were resolved by the
    # caller (a --image flag is the user's own choice and may point anywhere).
    fields.update(_resolve_media(row, base_dir, confine_to))
    merged_extra = {**(extra_body or {}), **(row_extra or {})} or None
    prompt = _prompt_of(fields)
    return build_request(prompt, model=model, extra_body=merged_extra, **fields)


def _decode(source: str, data: bytes) -> str:
    """Bytes of an input as text: UTF-8 with or without a BOM; anything else is a problem."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            [InputProblem(source, 1, "UTF-16 text; save the file as UTF-8 (or UTF-8 with BOM)")]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError([InputProblem(source, line, f"not UTF-8 text ({exc.reason})")]) from None


def _read_source(path: str, stdin: TextIO | None) -> tuple[str, Path, str]:
    """``(source name, folder of the file, text)`` of ``path`` (``-``: standard input)."""
    if path == "-":
        source = "<stdin>"
        try:
            if stdin is not None:
                text = stdin.read().removeprefix("\ufeff")
            else:
                import sys

                buffer = getattr(sys.stdin, "buffer", None)
                if buffer is not None:
                    text = _decode(source, buffer.read())
                else:  # pragma: no cover - a replaced sys.stdin without bytes
                    text = sys.stdin.read().removeprefix("\ufeff")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError([InputProblem(source, None, f"cannot read: {exc}")]) from None
        return source, Path.cwd(), text
    source, file = path, Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise InputError([InputProblem(source, None, "no such file")]) from None
    except IsADirectoryError:
        raise InputError([InputProblem(source, None, "is a folder, not a file")]) from None
    except OSError as exc:
        raise InputError(
            [InputProblem(source, None, f"cannot read: {exc.strerror or exc}")]
        ) from None
    return source, file.parent, _decode(source, data)


def load_inputs(
    path: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    fmt: InputFormat | Literal["auto"] | None = None,
    stdin: TextIO | None = None,
    allow_media_outside: bool = False,
) -> list[ParsedInput]:
    """Read and validate every input of ``path`` (``-`` for ``stdin``) into requests.

    ``defaults`` are request fields for every input (a row's own values win; ``model`` defaults
    to ``veo2``); ``extra_body`` is merged into every request body. ``fmt`` forces a format
    (``None``/``"auto"``: decided by :func:`sniff_format`). Local media paths in the file must
    lie in its folder (stdin: the current folder) unless ``allow_media_outside``. Raises
    :class:`InputError` listing every problem (file and line) when any input is unreadable,
    ambiguous or invalid: either all inputs are good, or nothing is returned.
    """
    source, base_dir, text = _read_source(path, stdin)
    try:
        defaults = _resolve_media(dict(defaults or {}), Path.cwd(), None)
    except ValueError as exc:
        raise InputError([InputProblem(source, None, str(exc))]) from None
    confine_to = None if allow_media_outside else base_dir
    if fmt is None or fmt == "auto":
        sniffed = sniff_format(source, path if path != "-" else "", text)
        fmt, delimiter = sniffed.format, sniffed.delimiter
    else:
        delimiter = None
    records, problems = read_records(source, text, fmt, delimiter)
    parsed: list[ParsedInput] = []
    for record in records:
        try:
            request = _build(record, defaults, extra_body, base_dir, confine_to)
        except RequestValidationError as exc:
            problems.append(InputProblem(source, record.line, _describe(exc)))
            continue
        except ValueError as exc:
            problems.append(InputProblem(source, record.line, str(exc)))
            continue
        parsed.append(ParsedInput(record.line, request))
    if not parsed and not problems:
        problems.append(InputProblem(source, None, "no inputs (the file has no prompts)"))
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise InputError(problems)
    return parsed


# --------------------------------------------------------------------------- identity


def request_fingerprint(inputs: Sequence[ParsedInput]) -> str:
    """A SHA-256 over every input's line number and request body (detects a changed file)."""
    digest = hashlib.sha256()
    for item in inputs:
        digest.update(json.dumps([item.line, item.request.to_body()], sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def body_hash(request: VideoRequest) -> str:
    """SHA-256 of a request's JSON body (canonical form)."""
    return hashlib.sha256(json.dumps(request.to_body(), sort_keys=True).encode()).hexdigest()


def redact_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a request body with long data URIs shortened, for logs and manifests."""

    def short(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("data:") and len(value) > 120:
            head = value.split(",", 1)[0]
            digest = hashlib.sha256(value.encode()).hexdigest()[:12]
            return f"{head},...({len(value)} chars, sha256 {digest})"
        if isinstance(value, list):
            return [short(v) for v in value]
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        return value

    return {k: short(v) for k, v in body.items()}
