"""Tests of veo_async._inputs: prompt files, line numbers, validation, media, fingerprints."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from veo_async._inputs import (
    InputError,
    InputProblem,
    convert_text_value,
    detect_format,
    load_inputs,
    media_to_data_uri,
    parse_field_assignment,
    redact_body,
    request_fingerprint,
    sniff_format,
)
from veo_async._models import Veo2ImageToVideo, Veo2TextToVideo, Veo3TextToVideo


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_txt_skips_blank_and_comment_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    """A .txt file gives one veo2 request per prompt line, numbered as in the file."""
    path = _write(tmp_path, "p.txt", "# header\n\na fox\n   \n  # indented comment\nan owl  \n")
    inputs = load_inputs(path)
    assert [(i.line, i.request.prompt) for i in inputs] == [(3, "a fox"), (6, "an owl")]
    assert all(isinstance(i.request, Veo2TextToVideo) for i in inputs)


def test_defaults_apply_and_rows_win(tmp_path: Path) -> None:
    """Default fields go to every input; a row's own values override them."""
    path = _write(
        tmp_path,
        "p.jsonl",
        '{"prompt": "a", "duration": 8}\n{"prompt": "b"}\n"c"\n',
    )
    inputs = load_inputs(path, defaults={"duration": 6, "seed": 1})
    assert [(i.request.prompt, getattr(i.request, "duration", None)) for i in inputs] == [
        ("a", 8),
        ("b", 6),
        ("c", 6),
    ]


def test_model_column_optional_default_from_defaults(tmp_path: Path) -> None:
    """Rows without a model use the default model; rows with one use theirs."""
    path = _write(tmp_path, "p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "model": "google/veo3"}\n')
    inputs = load_inputs(path, defaults={"model": "veo2"})
    assert isinstance(inputs[0].request, Veo2TextToVideo)
    assert isinstance(inputs[1].request, Veo3TextToVideo)


def test_csv_converts_cells_to_field_types(tmp_path: Path) -> None:
    """CSV cells become ints/bools where the model wants them; empty cells are left out."""
    path = _write(
        tmp_path,
        "p.csv",
        'prompt,duration,enhance_prompt,seed,negative_prompt\n"a fox, red",6,false,,123\n',
    )
    (item,) = load_inputs(path)
    assert item.line == 2
    assert item.request.to_body() == {
        "model": "veo2",
        "prompt": "a fox, red",
        "duration": 6,
        "enhance_prompt": False,
        "negative_prompt": "123",
    }


def test_csv_multiline_record_reports_its_first_line(tmp_path: Path) -> None:
    """A quoted cell spanning lines still gets the line where its record starts."""
    path = _write(tmp_path, "p.csv", 'prompt,duration\n"one\ntwo",6\n"bad",3\n')
    with pytest.raises(InputError) as info:
        load_inputs(path)
    (problem,) = info.value.problems
    assert problem.line == 4
    assert "duration" in problem.message and "5, 6, 7 or 8" in problem.message


def test_every_bad_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    """Malformed JSON, empty prompts, bad values and unknown models are all listed at once."""
    path = _write(
        tmp_path,
        "p.jsonl",
        "\n".join(
            [
                '{"prompt": "fine"}',
                "{not json",
                '{"prompt": "   "}',
                '{"prompt": "x", "duration": 9}',
                '{"prompt": "x", "model": "veo9"}',
                "[1, 2]",
                '{"duration": 5}',
                '{"prompt": "x", "colour": "red"}',
            ]
        ),
    )
    with pytest.raises(InputError) as info:
        load_inputs(path)
    problems = info.value.problems
    assert [p.line for p in problems] == [2, 3, 4, 5, 6, 7, 8]
    assert all(p.source == path for p in problems)
    text = str(info.value)
    assert "nothing was submitted" in text
    assert f"{path}:4: duration" in text
    assert "unknown model" in text
    assert "not a field" in text


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    """A missing file, a folder and a non-UTF-8 file each give a clear problem."""
    with pytest.raises(InputError, match="no such file"):
        load_inputs(str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="folder"):
        load_inputs(str(tmp_path))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"ok\nd\xe9j\xe0 vu\n")
    with pytest.raises(InputError) as info:
        load_inputs(str(bad))
    assert info.value.problems[0].line == 2


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    """A file with only comments has no inputs, which is reported."""
    with pytest.raises(InputError, match="no inputs"):
        load_inputs(_write(tmp_path, "p.txt", "# nothing\n\n"))


def test_csv_without_prompt_column_or_with_extra_cells(tmp_path: Path) -> None:
    """A CSV header without 'prompt' and a row with too many cells are reported."""
    with pytest.raises(InputError, match="no 'prompt' column"):
        load_inputs(_write(tmp_path, "a.csv", "text\nhello\n"))
    with pytest.raises(InputError) as info:
        load_inputs(_write(tmp_path, "b.csv", "prompt\nhello,extra\n"))
    assert info.value.problems[0].line == 2


def test_stdin_is_sniffed() -> None:
    """'-' reads stdin: JSON Lines when the first content line is an object, else text."""
    inputs = load_inputs("-", stdin=io.StringIO('# c\n{"prompt": "a", "duration": 7}\n'))
    assert inputs[0].request.to_body()["duration"] == 7
    inputs = load_inputs("-", stdin=io.StringIO("a fox\n"))
    assert inputs[0].request.prompt == "a fox"
    assert detect_format("x.CSV") == "csv"


def test_local_image_becomes_a_data_uri(tmp_path: Path) -> None:
    """A relative image path in a row is read (relative to the file) into a data URI."""
    (tmp_path / "frame.png").write_bytes(b"\x89PNG fake")
    path = _write(
        tmp_path,
        "p.jsonl",
        '{"prompt": "a", "model": "veo2/image-to-video", "image_url": "frame.png"}\n'
        '{"prompt": "b", "model": "veo2/image-to-video", "image_url": "https://x/y.png"}\n',
    )
    first, second = load_inputs(path)
    assert isinstance(first.request, Veo2ImageToVideo)
    assert first.request.image_url == "data:image/png;base64," + base64.b64encode(
        b"\x89PNG fake"
    ).decode("ascii")
    assert isinstance(second.request, Veo2ImageToVideo)
    assert second.request.image_url == "https://x/y.png"


def test_missing_image_file_is_a_line_problem(tmp_path: Path) -> None:
    """An image path that does not exist is reported on its line."""
    row = '{"prompt": "a", "model": "veo2/image-to-video", "image_url": "no.png"}'
    path = _write(tmp_path, "p.jsonl", row)
    with pytest.raises(InputError) as info:
        load_inputs(path)
    assert info.value.problems[0].line == 1
    assert "neither a URL nor an existing file" in info.value.problems[0].message
    with pytest.raises(ValueError, match="neither"):
        media_to_data_uri("nope.png", tmp_path)


def test_extra_body_is_merged(tmp_path: Path) -> None:
    """Global extra fields and a row's extra_body are both sent."""
    path = _write(tmp_path, "p.jsonl", '{"prompt": "a", "extra_body": {"beta": 1}}\n')
    (item,) = load_inputs(path, extra_body={"alpha": "x"})
    assert item.request.to_body()["alpha"] == "x"
    assert item.request.to_body()["beta"] == 1


def test_fingerprint_tracks_lines_and_bodies(tmp_path: Path) -> None:
    """The fingerprint changes when a prompt or its line changes, not otherwise."""
    a = load_inputs(_write(tmp_path, "a.txt", "one\ntwo\n"))
    b = load_inputs(_write(tmp_path, "b.txt", "one\ntwo\n"))
    c = load_inputs(_write(tmp_path, "c.txt", "one\nthree\n"))
    d = load_inputs(_write(tmp_path, "d.txt", "\none\ntwo\n"))
    assert request_fingerprint(a) == request_fingerprint(b)
    assert request_fingerprint(a) != request_fingerprint(c)
    assert request_fingerprint(a) != request_fingerprint(d)


def test_text_value_conversion_and_field_assignments() -> None:
    """Text values follow the field type; --field values are JSON when they parse."""
    assert convert_text_value("veo2", "duration", "6") == 6
    assert convert_text_value("veo2", "enhance_prompt", "no") is False
    assert convert_text_value("veo2", "negative_prompt", "42") == "42"
    assert convert_text_value("google/veo-3.1-reference-to-video", "image_urls", "u") == ["u"]
    assert parse_field_assignment("a=1") == ("a", 1)
    assert parse_field_assignment("a=hello world") == ("a", "hello world")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_field_assignment("novalue")


def test_redact_body_shortens_data_uris() -> None:
    """Long data URIs are shortened for manifests; other values are untouched."""
    body = {"prompt": "p", "image_url": "data:image/png;base64," + "A" * 500, "n": [1]}
    short = redact_body(body)
    assert short["prompt"] == "p" and short["n"] == [1]
    assert short["image_url"].startswith("data:image/png;base64,...(")
    assert str(InputProblem("f.txt", 3, "bad")) == "f.txt:3: bad"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p", "prompt,duration\na,6\n", ("csv", ",")),
        ("p.txt", "# c\nprompt\tduration\na\t6\n", ("tsv", "\t")),
        ("p.csv.txt", "prompt;duration\n", ("csv", ";")),
        ("p.csv", "prompt|duration\n", ("csv", "|")),
        ("p.tsv", "prompt\n", ("tsv", "\t")),
        ("p", '\ufeff{"prompt": "a"}\n', ("jsonl", ",")),
        ("p", '"just a JSON string"\n', ("jsonl", ",")),
        ("p", "a fox, running, in snow\nan owl\n", ("txt", ",")),
        ("p", '"Hello," she said\n[dramatic] a fox\n', ("txt", ",")),
        ("p.jsonl", "not json at all\n", ("jsonl", ",")),
    ],
)
def test_the_format_is_sniffed_from_the_content(
    name: str, text: str, expected: tuple[str, str]
) -> None:
    """Tables with a prompt column, JSON values and plain lines are told apart by content."""
    sniffed = sniff_format(name, name, text)
    assert (sniffed.format, sniffed.delimiter) == expected


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("text,duration\n", 1, "no 'prompt' column"),
        ("\n# c\nPrompt,Duration\n", 3, "no 'prompt' column"),
        ("a fox\t6\n", 1, "a tab"),
        ('a fox\n{"prompt": "b"}\n', 2, "JSON object among text"),
        ("{oops\n", 1, "not valid JSON"),
        ('["a", "b"]\n', 1, "a JSON list"),
    ],
)
def test_ambiguous_content_is_refused(text: str, line: int, words: str) -> None:
    """Content that could be read two ways raises InputError with its line and --format."""
    with pytest.raises(InputError) as info:
        sniff_format("in.txt", "in.txt", text)
    (problem,) = info.value.problems
    assert problem.line == line and words in problem.message and "--format" in problem.message
    assert str(problem).startswith(f"in.txt:{line}: ")


def test_stdin_bom_and_csv_are_handled(tmp_path: Path) -> None:
    """A BOM on stdin is dropped; a CSV on stdin is a table, its header never a prompt."""
    inputs = load_inputs("-", stdin=io.StringIO('\ufeff{"prompt": "a"}\n'))
    assert [i.request.prompt for i in inputs] == ["a"]
    inputs = load_inputs("-", stdin=io.StringIO("prompt,seed\nx,1\ny,2\n"))
    assert [(i.line, i.request.prompt) for i in inputs] == [(2, "x"), (3, "y")]


def test_media_outside_the_input_folder_is_refused(tmp_path: Path) -> None:
    """Absolute paths, .. and symlinks out of the file's folder are refused unless allowed."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ok.png").write_bytes(b"\x89PNG ok")
    (folder / "link.png").symlink_to(secret)
    rows = ["ok.png", str(secret), "../secret.png", "link.png", "~/.ssh/id_rsa"]
    text = "".join(
        f'{{"prompt": "p{i}", "model": "veo2/image-to-video", "image_url": "{r}"}}\n'
        for i, r in enumerate(rows)
    )
    path = _write(folder, "p.jsonl", text)
    with pytest.raises(InputError) as info:
        load_inputs(path)
    assert [p.line for p in info.value.problems] == [2, 3, 4, 5]
    assert all("--allow-media-outside" in p.message for p in info.value.problems)
    with pytest.raises(InputError) as allowed:
        load_inputs(path, allow_media_outside=True)
    assert [p.line for p in allowed.value.problems] == [5]  # only the missing file is left
    with pytest.raises(ValueError, match="outside"):
        media_to_data_uri(str(secret), folder, confine_to=folder)
