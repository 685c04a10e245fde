"""The fitted poll schedule and its cost model. Pure functions over observed durations."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = ["Schedule", "fit_schedule", "quantile", "schedule_cost"]

FIRST_QUANTILES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
"""Candidate first polls, as quantiles of the observed durations."""
STEPS_SECONDS = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0)
"""Candidate steps between polls (seconds, before ``min_interval``/``max_interval``)."""


@dataclass(frozen=True)
class Schedule:
    """A fitted schedule in units of the prior: first poll, step, start of the tail."""

    first: float
    step: float
    tail: float
    median: float | None = None
    bound: float | None = None
    """The first poll while rate-bound (``PollPolicy.bound_quantile``)."""
    early: float | None = None
    """A short plausible duration: the 10th percentile of the observed durations."""


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted samples (linear interpolation)."""
    if not ordered:
        raise ValueError("no samples")
    pos = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def schedule_cost(
    samples: list[float], first: float, step: float, scale: float, delay_weight: float
) -> tuple[float, float]:
    """Mean requests and mean detection delay (seconds) of a schedule over ``samples``.

    ``samples``, ``first`` and ``step`` are in units of the prior; ``scale`` converts them to
    seconds. Polls happen at ``first, first + step, first + 2 step, ...``.
    """
    if not samples:
        return 0.0, 0.0
    ordered = sorted(samples)
    polls, delay = _cost_sorted(ordered, _prefix_sums(ordered), first, step)
    n = len(ordered)
    return polls / n, delay * scale / n


def _prefix_sums(ordered: list[float]) -> list[float]:
    sums = [0.0]
    total = 0.0
    for x in ordered:
        total += x
        sums.append(total)
    return sums


def _cost_sorted(
    ordered: list[float], sums: list[float], first: float, step: float
) -> tuple[float, float]:
    """Total polls and total delay (units of the prior) over sorted samples.

    Samples are taken a group at a time: all those detected by the same poll ``first + k
    step`` cost ``1 + k`` polls each and ``first + k step - x`` of delay, so the work is one
    bisection per poll that detects something, not one step per sample (the fit tries about
    150 schedules every few dozen completions).
    """
    n = len(ordered)
    i = bisect.bisect_right(ordered, first)
    polls = float(n)
    delay = i * first - sums[i]
    while i < n:
        k = math.ceil((ordered[i] - first) / step - 1e-12)
        edge = first + k * step
        j = max(bisect.bisect_right(ordered, edge + 1e-12 * step, i), i + 1)
        count = j - i
        polls += k * count
        delay += count * edge - (sums[j] - sums[i])
        i = j
    return polls, delay


def fit_schedule(
    samples: list[float],
    priors: list[float],
    *,
    min_interval: float,
    max_interval: float,
    delay_weight: float,
    tail_quantile: float,
    bound_quantile: float,
    max_step: float | None = None,
) -> Schedule:
    """The schedule minimising ``requests + delay_weight * delay (s)`` per job over ``samples``.

    A grid search: first poll at each of :data:`FIRST_QUANTILES`, step each of
    :data:`STEPS_SECONDS` within the interval bounds and at most ``max_step`` seconds (the
    policy's ``tail_gap``: the longest gap between looks while a job is plausibly about to
    finish; a fit over a few samples that happen to lie one long step apart would otherwise
    pick that step and find every other job that much late). ``samples`` are durations in
    units of their priors; ``priors`` (seconds) give the scale (their median).
    """
    ordered = sorted(samples)
    sums = _prefix_sums(ordered)
    n = len(ordered)
    scale = sorted(priors)[len(priors) // 2]
    best: tuple[float, float, float] | None = None
    for q in FIRST_QUANTILES:
        first = quantile(ordered, q)
        for step_s in STEPS_SECONDS:
            if step_s < min_interval or step_s > max_interval:
                continue
            if max_step is not None and step_s > max(max_step, min_interval):
                continue
            step = step_s / scale
            polls, delay = _cost_sorted(ordered, sums, first, step)
            cost = (polls + delay_weight * delay * scale) / n
            if best is None or cost < best[0] - 1e-9:
                best = (cost, first, step)
    assert best is not None
    _, first, step = best
    tail = quantile(ordered, tail_quantile) + step
    bound = max(first, quantile(ordered, bound_quantile))
    return Schedule(first, step, tail, quantile(ordered, 0.5), bound, quantile(ordered, 0.1))
