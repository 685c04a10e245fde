"""The progress line for library batches."""

from __future__ import annotations

import io

import pytest

from veo_async import BatchCounts
from veo_async._progress import ProgressLine


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_names_every_nonzero_count_and_formats_credits() -> None:
    """The line says finished of total, ok, failed, running, waiting, uncertain and credits."""
    counts = BatchCounts(
        total_seen=10, queued=2, submitting=1, running=3, done=3, failed=1, uncertain=1
    )
    counts.credits_used = 1_008_000.0
    line = ProgressLine.render(counts, 10)
    assert line == (
        "veo-async: 4/10 finished, 3 ok, 1 failed, 3 running, 3 to submit, 1 uncertain, "
        "1,008,000 credits"
    )
    assert ProgressLine.render(BatchCounts(), None) == "veo-async: 0 finished, 0 ok, 0 running"


def test_terminal_rewrites_one_line_and_ends_it() -> None:
    """On a terminal each update rewrites the line with \\r; close ends it with a newline."""
    out = _TTY()
    bar = ProgressLine(3, stream=out, min_interval=0.0)
    bar.update(BatchCounts(running=3))
    bar.update(BatchCounts(done=3))
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "3/3 finished" in text.rsplit("\r", 1)[-1]


def test_log_stream_is_throttled_to_whole_lines() -> None:
    """A non-terminal stream gets whole lines, throttled, plus the final state on close."""
    out = io.StringIO()
    bar = ProgressLine(2, stream=out, log_every=3600.0)
    for done in range(3):
        bar.update(BatchCounts(done=done))
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == ["veo-async: 0/2 finished, 0 ok, 0 running", lines[-1]]
    assert lines[-1].startswith("veo-async: 2/2 finished")
    assert "\r" not in out.getvalue()


def test_broken_stream_never_raises() -> None:
    """Progress is optional: a closed stream is ignored."""
    out = _TTY()
    bar = ProgressLine(1, stream=out, min_interval=0.0)
    out.close()
    bar.update(BatchCounts(done=1), force=True)
    bar.close()


@pytest.mark.anyio
async def test_batch_with_progress_prints_its_final_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``client.batch(..., progress=True)`` writes progress to stderr, ending with the final
    counts (3 of 3 finished); without it nothing is written."""
    from veo_async.testing import emulated

    async with emulated(time_scale=0.001) as service:
        async with service.client.batch(["a fox", "an owl", "a cat"], progress=True) as batch:
            results = [r async for r in batch]
        assert len(results) == 3
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith("veo-async: 3/3 finished, 3 ok")
        async with service.client.batch(["a dog"]) as batch:
            _ = [r async for r in batch]
        assert capsys.readouterr().err == ""
