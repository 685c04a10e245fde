"""The create-order bound of ``benchmarks/vs_script.py``: what the server alone gives a run's
own creates (issue 16: at N = 100 the order decides which generation time comes last)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.vs_script import create_order_bound


def _record(created: float, started: float, seconds: float) -> dict[str, Any]:
    return {"created_at": created, "started_at": started, "completed_at": started + seconds}


def test_the_bound_is_a_fifo_schedule_of_the_ledger_s_creates() -> None:
    """Three jobs on the 50 slots, ready after the 1 s queue delay: the bound is the latest
    ready time plus generation time, measured from the worker's start, in real-time seconds;
    the order of the records does not matter (the ledger's create times give it)."""
    scale = 0.1
    records = [
        _record(100.2, 100.3, 4.0),  # ready 100.3, done 104.3
        _record(100.0, 100.1, 4.5),  # ready 100.1, done 104.6
        _record(100.1, 100.2, 3.0),
    ]
    bound = create_order_bound(records, started_at=100.0, scale=scale)
    assert bound == pytest.approx((100.1 + 4.5 - 100.0) / scale)


def test_the_bound_queues_jobs_behind_the_slots_in_create_order() -> None:
    """60 jobs on 50 slots: the 10 created last wait for the first 10 slots to free, so a long
    job created last ends the bound, and created first it does not."""
    scale = 1.0
    short = [_record(float(i) * 0.01, 0.0, 10.0) for i in range(59)]
    long_last = [*short, _record(0.59, 0.0, 30.0)]
    long_first = [_record(-0.01, 0.0, 30.0), *short]
    last = create_order_bound(long_last, started_at=0.0, scale=scale)
    first = create_order_bound(long_first, started_at=0.0, scale=scale)
    assert last is not None and first is not None
    assert last == pytest.approx(1.0 + 0.09 + 10.0 + 30.0)  # waits for slot 10 (ready 1.09)
    assert first == pytest.approx(-0.01 + 1.0 + 30.0)  # it starts at once: 10 s sooner


def test_no_completed_job_gives_no_bound() -> None:
    """Without a started and completed job there is nothing to schedule."""
    assert create_order_bound([{"created_at": 1.0, "started_at": None}], 0.0, 1.0) is None
