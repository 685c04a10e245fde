"""Compatibility shim: the rate governor lives in :mod:`veo_async.ratelimit`."""

from __future__ import annotations

from .ratelimit import GovernorTuning, PaceState, RateGovernor

__all__ = ["GovernorTuning", "PaceState", "RateGovernor"]
