"""A seeded emulator run is pinned: benchmarks and fault-matrix tests rely on its pattern."""

from __future__ import annotations

import contextlib
import hashlib
import json

from tests.emulator._helpers import UNIVERSAL, VENDOR, FakeClock, make_emulator
from veo_async.emulator import FaultConfig

#: The fingerprint of :func:`_trace` (seeds 0-3). It changes only when a reply, a fault draw
#: or the order of the draws changes; if that is deliberate, say so in the changelog (every
#: seeded benchmark's fault pattern changes with it) and update this value.
PINNED = "a57837b6f80e01a58875bcf371cf475b8b262f1c"


def _trace(seed: int) -> list[object]:
    """Creates (some not JSON), polls and downloads (ranges, HEAD, a leaked key) under faults,
    with a restart and a reconfiguration midway: what each request got, and the ledger."""
    clock = FakeClock()
    faults = FaultConfig.mixed(0.3).model_copy(
        update={
            "job_error": 0.2,
            "completed_without_url": 0.1,
            "truncated_download": 0.3,
            "slow_response": 0.1,
        }
    )
    emu = make_emulator(
        clock, seed=seed, faults=faults, rate_limit=5.0, max_concurrent=3, credits=3_000_000
    )
    ids: list[str] = []
    out: list[object] = []
    for i in range(120):
        clock.advance(4.1 * ((i * 7) % 5))
        auth = "Bearer k1" if i % 11 else ("Bearer k2" if i % 2 else None)
        kind = i % 9
        if kind < 3:
            body = {"model": "veo2", "prompt": f"p{i % 40}"}
            raw = json.dumps(body).encode() if i % 13 else b"{bad"
            path = UNIVERSAL if i % 2 else VENDOR
            reply = emu.handle_create(path, auth, raw, "http://x")
            if reply.status in (200, 201) and reply.action == "respond":
                with contextlib.suppress(ValueError):  # a malformed_json fault
                    ids.append(reply.json()["id"])
        elif kind < 7:
            gid = ids[i % len(ids)] if ids else None
            reply = emu.handle_poll(UNIVERSAL, auth, gid, "http://x")
        else:
            gid = ids[(i * 3) % len(ids)] if ids else "nope"
            ranges = "bytes=0-99" if i % 4 == 0 else ("bytes=999999-" if i % 8 == 1 else None)
            method = "HEAD" if i % 10 == 3 else "GET"
            path = f"/cdn/generations/{gid}.mp4"
            reply = emu.handle_download(path, i % 17 == 0, method, ranges)
        out.append([reply.status, reply.action, reply.delay, reply.truncate_at, reply.fault])
        if i == 60:
            emu.restart()
        if i == 80:
            emu.configure(max_concurrent=5, rate_limit=2.0)
    stats = emu.stats()
    out.append({k: v for k, v in stats.items() if k != "now"})
    return out


def test_a_seeded_run_is_pinned() -> None:
    """Four seeded runs of mixed requests and faults give the recorded replies and ledger."""
    traces = [_trace(seed) for seed in range(4)]
    text = json.dumps(traces, sort_keys=True, default=str)
    assert hashlib.sha1(text.encode()).hexdigest() == PINNED
