"""Fault injection: which fault, if any, a request gets, decided by hashing, not by an RNG.

Every draw is a hash of the seed and the request's identity (the body for creates, the
generation id and request number for polls and downloads), so a run repeats under the same
seed even when requests interleave differently.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from ._config import CREATE_FAULTS, DOWNLOAD_FAULTS, POLL_FAULTS, FaultConfig, FaultKind


@dataclass(frozen=True)
class FaultTable:
    create: tuple[tuple[float, FaultKind], ...] = field(default=())
    poll: tuple[tuple[float, FaultKind], ...] = field(default=())
    download: tuple[tuple[float, FaultKind], ...] = field(default=())

    @classmethod
    def build(cls, faults: FaultConfig) -> FaultTable:
        def table(kinds: tuple[FaultKind, ...]) -> tuple[tuple[float, FaultKind], ...]:
            out: list[tuple[float, FaultKind]] = []
            total = 0.0
            for kind in kinds:
                rate = faults.rate(kind)
                if rate > 0:
                    total += rate
                    out.append((total, kind))
            return tuple(out)

        return cls(table(CREATE_FAULTS), table(POLL_FAULTS), table(DOWNLOAD_FAULTS))


def hash_floats(text: str, count: int) -> list[float]:
    digest = hashlib.blake2b(text.encode(), digest_size=8 * count).digest()
    return [
        int.from_bytes(digest[i : i + 8], "big") / 18446744073709551616.0
        for i in range(0, 8 * count, 8)
    ]


def normal(u1: float, u2: float) -> float:
    return math.sqrt(-2.0 * math.log(max(u1, 1e-12))) * math.cos(2.0 * math.pi * u2)


def decide(
    table: tuple[tuple[float, FaultKind], ...], seed: object, kind: str, identity: str, number: int
) -> FaultKind | None:
    """The fault (if any) for request ``number`` of ``identity``: one hash draw, no state."""
    if not table:
        return None
    draw = hash_floats(f"{seed}|{kind}|{identity}|{number}", 1)[0]
    for cumulative, fault in table:
        if draw < cumulative:
            return fault
    return None


PRE_FAULTS: frozenset[FaultKind] = frozenset(
    {
        "rate_limit",
        "rate_limit_no_retry_after",
        "server_error",
        "bad_gateway",
        "service_unavailable",
        "gateway_timeout",
        "connection_reset",
    }
)
