"""Input formats of a batch: sniffing ``txt`` / ``jsonl`` / ``csv`` / ``tsv`` and splitting
an input into raw records with line numbers (validation is in :mod:`veo_async._inputs`).

The format is read from the *content*, not only from the file name: ``.jsonl``/``.ndjson``,
``.csv`` and ``.tsv`` files are parsed as named; anything else is sniffed, and input that
could be read two ways is refused with the file, the line and the ``--format`` to pass (see
the :mod:`veo_async._inputs` module notes). Each rule is its own small function.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._exceptions import VeoError
from ._models import MODEL_REQUESTS

__all__ = [
    "InputError",
    "InputFormat",
    "InputProblem",
    "Sniffed",
    "detect_format",
    "read_records",
    "sniff_format",
]

InputFormat = Literal["txt", "jsonl", "csv", "tsv"]

_SUFFIXES: Mapping[str, InputFormat] = {
    ".txt": "txt",
    ".text": "txt",
    ".prompts": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
}
#: Suffixes whose name is trusted; every other file (``.txt`` too) is sniffed by content.
_TRUSTED_SUFFIXES = frozenset({".jsonl", ".ndjson", ".csv", ".tsv", ".tab"})
#: Cell separators a header row may use, in order of preference.
_DELIMITERS = (",", "\t", ";", "|")
#: Every request field name any model knows (a header naming these is a CSV header).
_KNOWN_FIELDS = frozenset(name for cls in MODEL_REQUESTS.values() for name in cls.model_fields) | {
    "model",
    "prompt",
    "extra_body",
}


@dataclass(frozen=True)
class InputProblem:
    """One problem in an input file: where (file and line) and what."""

    source: str
    """The file name as given (``<stdin>`` for standard input)."""
    line: int | None
    """1-based line number, or ``None`` for problems with the whole file."""
    message: str
    """What is wrong."""

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


class InputError(VeoError):
    """An input file cannot be used; ``problems`` lists every problem found (file, line)."""

    def __init__(self, problems: Sequence[InputProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = "\n".join(f"  {p}" for p in self.problems[:50])
        more = f"\n  ... and {count - 50} more" if count > 50 else ""
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{count} {noun} in the input; nothing was submitted:\n{head}{more}")


@dataclass(frozen=True)
class _Record:
    line: int
    fields: dict[str, Any]
    text_values: bool  # values came from text (txt/csv) and may need type conversion


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class Sniffed:
    """The format of an input as decided from its name and content."""

    format: InputFormat
    """``txt``, ``jsonl``, ``csv`` or ``tsv``."""
    delimiter: str
    """The cell separator for ``csv``/``tsv`` (``,`` ``\\t`` ``;`` ``|``); ``,`` otherwise."""
    reason: str
    """Why, in words (``"the .jsonl suffix"``, ``"a header with a prompt column"``, ...)."""


def _content_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the lines that are neither blank nor comments."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            out.append((number, stripped))
    return out


def _header_cells(line: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []
    return [cell.strip() for cell in row]


def _header_delimiter(line: str, prefer: str = ",") -> str | None:
    """The delimiter under which ``line`` is a header with a ``prompt`` column, if any."""
    for delimiter in (prefer, *_DELIMITERS):
        cells = _header_cells(line, delimiter)
        if "prompt" in cells and (len(cells) > 1 or line.strip() == "prompt"):
            return delimiter
    return None


def _looks_like_header(line: str) -> tuple[str, list[str]] | None:
    """A delimiter and cells when ``line`` names request fields (any case) but no ``prompt``."""
    for delimiter in _DELIMITERS:
        cells = _header_cells(line, delimiter)
        if len(cells) < 2:
            continue
        known = [c for c in cells if c.lower() in _KNOWN_FIELDS]
        if known and all(
            len(c) <= 40 and c.replace("_", "").replace(" ", "").isalnum() for c in cells
        ):
            return delimiter, cells
    return None


def _json_value(line: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return False, None


def _ambiguous(source: str, line: int | None, message: str) -> InputError:
    return InputError([InputProblem(source, line, message)])


def sniff_format(source: str, name: str, text: str) -> Sniffed:
    """Decide the format of an input from its file name and content (see ``_inputs``).

    ``source`` names the input in errors, ``name`` is its file name (``""`` for stdin).
    Raises :class:`InputError` (file, line, and the ``--format`` to pass) when the content
    could be read more than one way.
    """
    suffix = Path(name).suffix.lower() if name else ""
    lines = _content_lines(text.removeprefix("\ufeff"))
    if suffix in _TRUSTED_SUFFIXES:
        return _by_suffix(suffix, lines)
    if not lines:
        return Sniffed("txt", ",", "no content")
    number, first = lines[0]
    delimiter = _header_delimiter(first)
    if delimiter is not None:
        kind: InputFormat = "tsv" if delimiter == "\t" else "csv"
        return Sniffed(kind, delimiter, "a header row with a prompt column")
    if first[0] in '{["' and _json_first_line(source, number, first):
        return Sniffed("jsonl", ",", "a JSON value on the first line")
    _refuse_header_without_prompt(source, number, first)
    _refuse_mixed_lines(source, lines)
    return Sniffed("txt", ",", "plain text lines")


def _by_suffix(suffix: str, lines: list[tuple[int, str]]) -> Sniffed:
    """A trusted suffix: the format it names (for CSV/TSV, the header picks the separator)."""
    named = _SUFFIXES[suffix]
    if named in ("csv", "tsv"):
        head = lines[0][1] if lines else ""
        default = "\t" if named == "tsv" else ","
        sep = _header_delimiter(head, default) or default
        return Sniffed("tsv" if sep == "\t" else "csv", sep, f"the {suffix} suffix")
    return Sniffed(named, ",", f"the {suffix} suffix")


def _json_first_line(source: str, number: int, first: str) -> bool:
    """Whether a first line starting like JSON makes the input JSON Lines (or is refused)."""
    ok, value = _json_value(first)
    if ok and isinstance(value, (dict, str)):
        return True
    what = "is not valid JSON" if not ok else f"is a JSON {type(value).__name__}"
    if first[0] == "{" or ok:
        raise _ambiguous(
            source,
            number,
            f"this looks like JSON Lines but {what}; fix the line and pass --format jsonl "
            "(or pass --format txt to send every line, braces and all, as a prompt)",
        )
    return False


def _refuse_header_without_prompt(source: str, number: int, first: str) -> None:
    """A first line naming request fields but no ``prompt`` column is refused."""
    header = _looks_like_header(first)
    if header is None:
        return
    sep, cells = header
    label = "TSV" if sep == "\t" else "CSV"
    raise _ambiguous(
        source,
        number,
        f"this looks like a {label} header ({', '.join(cells)}) but has no 'prompt' column; "
        f"name the prompt column 'prompt' (and pass --format {label.lower()}), or pass "
        "--format txt to send every line, this one too, as a prompt",
    )


def _refuse_mixed_lines(source: str, lines: list[tuple[int, str]]) -> None:
    """Tabs or JSON objects among text prompts are refused (a mis-read TSV or JSONL)."""
    for number, stripped in lines:
        if "\t" in stripped:
            raise _ambiguous(
                source,
                number,
                "a tab inside a prompt line: is this a TSV file without a 'prompt' header? "
                "Add a header row with a 'prompt' column (--format tsv), or pass --format txt "
                "to send each line, tabs included, as a prompt",
            )
        if stripped.startswith("{") and stripped.endswith("}"):
            ok, value = _json_value(stripped)
            if ok and isinstance(value, dict):
                raise _ambiguous(
                    source,
                    number,
                    "a JSON object among text prompts: pass --format jsonl if every line is "
                    "JSON (fix the others), or --format txt to send this line as a prompt",
                )


def detect_format(name: str, text: str | None = None) -> InputFormat:
    """The format of an input named ``name`` with content ``text`` (see :func:`sniff_format`)."""
    return sniff_format(name or "<stdin>", name, text or "").format


def read_records(
    source: str, text: str, fmt: InputFormat, delimiter: str | None = None
) -> tuple[list[_Record], list[InputProblem]]:
    """Split ``text`` into raw records with line numbers; malformed lines become problems."""
    if fmt == "txt":
        return _read_txt(text), []
    if fmt == "jsonl":
        return _read_jsonl(source, text)
    if delimiter is None:
        first = next(iter(_content_lines(text)), (0, ""))[1]
        default = "\t" if fmt == "tsv" else ","
        delimiter = _header_delimiter(first, default) or default
    return _read_csv(source, text, delimiter)


def _read_txt(text: str) -> list[_Record]:
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        prompt = raw.strip()
        if not prompt or prompt.startswith("#"):
            continue
        records.append(_Record(number, {"prompt": prompt}, text_values=True))
    return records


def _read_jsonl(source: str, text: str) -> tuple[list[_Record], list[InputProblem]]:
    records: list[_Record] = []
    problems: list[InputProblem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            problems.append(InputProblem(source, number, f"not valid JSON: {exc.msg}"))
            continue
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, dict):
            problems.append(
                InputProblem(source, number, f"expected a JSON object, got {type(value).__name__}")
            )
            continue
        records.append(_Record(number, value, text_values=False))
    return records, problems


def _read_header(source: str, start: int, row: list[str]) -> tuple[list[str], list[InputProblem]]:
    """The column names of a header row, and what is wrong with them."""
    header = [cell.strip() for cell in row]
    problems: list[InputProblem] = []
    seen: set[str] = set()
    for name in header:
        if not name:
            problems.append(InputProblem(source, start, "empty column name in header"))
        elif name in seen:
            problems.append(InputProblem(source, start, f"duplicate column {name!r}"))
        seen.add(name)
    if "prompt" not in header:
        hint = (
            " (column names are case-sensitive: name it 'prompt')"
            if any(name.lower() == "prompt" for name in header)
            else "; pass --format txt if this is a list of prompts"
        )
        problems.append(InputProblem(source, start, f"the header row has no 'prompt' column{hint}"))
    return header, problems


def _skipped(row: list[str]) -> bool:
    """Blank rows and ``#`` comment rows are not records."""
    return not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#")


def _read_csv(
    source: str, text: str, delimiter: str = ","
) -> tuple[list[_Record], list[InputProblem]]:
    records: list[_Record] = []
    problems: list[InputProblem] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    last_line = 0
    try:
        for row in reader:
            start, last_line = last_line + 1, reader.line_num
            if _skipped(row):
                continue
            if header is None:
                header, found = _read_header(source, start, row)
                problems += found
            elif len(row) > len(header):
                problems.append(
                    InputProblem(
                        source, start, f"{len(row)} cells but the header has {len(header)} columns"
                    )
                )
            else:
                fields = {
                    name: cell
                    for name, cell in zip(header, row, strict=False)
                    if name and cell.strip() != ""
                }
                records.append(_Record(start, fields, text_values=True))
    except csv.Error as exc:
        problems.append(InputProblem(source, last_line + 1, f"malformed CSV: {exc}"))
    if header is None:
        problems.append(InputProblem(source, None, "empty CSV file (no header row)"))
    return records, problems
