"""Crash-safe resume as a library (``veo_async._resume``), without the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from veo_async._engine import BatchResult
from veo_async._exceptions import CreateOutcomeUnknownError
from veo_async._inputs import ParsedInput
from veo_async._journal import Journal, JournalState
from veo_async._models import Generation, build_request
from veo_async._resume import (
    ResumeError,
    ResumeOptions,
    prepare_batch,
    record_result,
    video_filename,
)

OPTIONS = ResumeOptions(source="p.txt", target="http://x universal")


def _inputs(*prompts: str, first_line: int = 3) -> list[ParsedInput]:
    return [
        ParsedInput(line=first_line + i, request=build_request(p, model="veo2"))
        for i, p in enumerate(prompts)
    ]


@pytest.mark.anyio
async def test_plan_submits_new_inputs_and_polls_known_ids(tmp_path: Path) -> None:
    """A fresh journal submits everything; after an id is recorded, that input is polled
    again and never submitted twice; numbers count inputs from 1 whatever their lines."""
    inputs = _inputs("a fox", "an owl")
    async with await Journal.open(tmp_path) as journal:
        plan = await prepare_batch(journal, inputs, OPTIONS)
        assert [key for _, key in plan.submit] == list(plan.numbers)
        assert sorted(plan.numbers.values()) == [1, 2] and sorted(plan.lines.values()) == [3, 4]
        first_key = plan.submit[0][1]
        await journal.record_intent(first_key)
        await journal.record_submitted(first_key, "gen-1", "queued")
    async with await Journal.open(tmp_path) as journal:
        again = await prepare_batch(journal, inputs, OPTIONS)
        assert again.resumed
        assert [(key, gid) for _, key, gid in again.track] == [(first_key, "gen-1")]
        assert first_key not in [key for _, key in again.submit] and len(again.submit) == 1


@pytest.mark.anyio
async def test_interrupted_create_becomes_uncertain_not_resubmitted(tmp_path: Path) -> None:
    """An intent with no id (the process died mid-create) is uncertain: neither polled nor
    submitted, and a note names its line; resubmit_uncertain makes it submittable."""
    inputs = _inputs("a fox")
    async with await Journal.open(tmp_path) as journal:
        key = (await prepare_batch(journal, inputs, OPTIONS)).submit[0][1]
        await journal.record_intent(key)
    async with await Journal.open(tmp_path) as journal:
        plan = await prepare_batch(journal, inputs, OPTIONS)
        assert not plan.submit and not plan.track
        assert any("p.txt:3" in note for note in plan.notes)
    async with await Journal.open(tmp_path) as journal:
        retry = ResumeOptions(source="p.txt", target=OPTIONS.target, resubmit_uncertain=True)
        assert [k for _, k in (await prepare_batch(journal, inputs, retry)).submit] == [key]


@pytest.mark.anyio
async def test_other_inputs_are_refused_naming_both_files(tmp_path: Path) -> None:
    """A journal made from another file: ResumeError naming both, and nothing changes."""
    async with await Journal.open(tmp_path) as journal:
        await prepare_batch(journal, _inputs("a fox"), ResumeOptions("first.txt", OPTIONS.target))
    async with await Journal.open(tmp_path) as journal:
        with pytest.raises(ResumeError) as info:
            await prepare_batch(
                journal, _inputs("an owl"), ResumeOptions("second.txt", OPTIONS.target)
            )
    assert "from first.txt" in str(info.value) and "with second.txt" in str(info.value)
    async with await Journal.open(tmp_path) as journal:
        assert await journal.get_meta("source") == "first.txt"


@pytest.mark.anyio
async def test_record_result_returns_the_state_and_keeps_polls(tmp_path: Path) -> None:
    """record_result says which state it left (the display counts by it) and keeps the poll
    count in the event the report reads."""
    inputs = _inputs("a fox", "an owl")
    async with await Journal.open(tmp_path) as journal:
        (item, k1), (_, k2) = (await prepare_batch(journal, inputs, OPTIONS)).submit
        await journal.record_intent(k1)  # the store's rules: a result follows a create
        await journal.record_submitted(k1, "gen-1", "queued")
        await journal.record_intent(k2)
        done = Generation.model_validate(
            {"id": "gen-1", "status": "completed", "video": {"url": "https://cdn/x.mp4"}}
        )
        ok = BatchResult(
            index=0,
            request=item.request,
            generation=done,
            error=None,
            generation_id="gen-1",
            key=k1,
        )
        assert await record_result(journal, ok, polls=4) is JournalState.COMPLETED
        lost = BatchResult(
            index=1,
            request=item.request,
            generation=None,
            error=CreateOutcomeUnknownError("reset"),
            generation_id=None,
            key=k2,
        )
        assert await record_result(journal, lost) is JournalState.UNCERTAIN
        details = [d for _, _, e, d in await journal.events(k1) if e == "completed"]
        assert details and details[0]["polls"] == 4


def test_video_filename_is_numbered_and_safe() -> None:
    """File names start with the 4-digit input number and carry no path separators."""
    name = video_filename(1, "A fox / in ../snow", "gen-123456789")
    assert name.startswith("0001-") and name.endswith(".mp4") and "/" not in name
