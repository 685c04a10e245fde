"""``client.wait()`` plans its polls through the same ``PollPlanner`` protocol as a batch."""

from __future__ import annotations

from typing import Any

import pytest

from veo_async import Generation
from veo_async.polling import FixedIntervalPlanner, PollJob
from veo_async.testing import ScriptedVeoAPI


class Recording(FixedIntervalPlanner):
    """A fixed-interval planner that records every decision it is asked for."""

    def __init__(self) -> None:
        super().__init__(interval=0.001)
        object.__setattr__(self, "calls", [])

    def first_poll(self, job: PollJob, now: float) -> float:
        self.calls.append(("first", job.resumed, job.polls))
        return super().first_poll(job, now)

    def next_poll(self, job: PollJob, reply: Generation, now: float) -> float:
        self.calls.append(("next", str(reply.status), job.polls))
        return super().next_poll(job, reply, now)

    def finished(self, job: PollJob, reply: Generation | None, now: float) -> None:
        self.calls.append(("finished", str(reply.status if reply else None), job.polls))

    calls: list[tuple[Any, ...]]


@pytest.mark.anyio
@pytest.mark.usefixtures("veo_no_waiting")
async def test_wait_asks_the_planner_for_every_poll() -> None:
    """A job completing on its third poll: one first poll, two next polls after the unfinished
    replies, one finished; a fresh create is not resumed, a bare id is."""
    api = ScriptedVeoAPI()
    api.script("fox", polls=3)
    async with api.client() as client:
        planner = Recording()
        created = await client.submit(prompt="a fox")
        done = await client.wait(created, poll_policy=planner)
        assert done.succeeded
        assert planner.calls == [
            ("first", False, 0),
            ("next", "queued", 1),
            ("next", "generating", 2),
            ("finished", "completed", 3),
        ]
        again = Recording()
        await client.wait(created.id, poll_policy=again)
        assert again.calls == [("first", True, 0), ("finished", "completed", 1)]
