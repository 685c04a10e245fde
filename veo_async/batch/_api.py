"""What the batch engine needs of a client: a small interface it owns (no import cycle)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._models import Generation, VideoRequest
    from ..instrumentation import Instrumentation
    from ..polling import PollPolicy
    from ..ratelimit import RateGovernor

__all__ = ["JobsAPI"]


class JobsAPI(Protocol):
    """The API as a batch uses it; ``AsyncVeoClient.batch`` passes an adapter of the client.

    ``create`` sends one create (retried only when it provably started nothing) and ``get``
    one status request (retried); both go through ``governor``. ``time_scale``: real seconds
    per service second; ``poll_policy``: the default policy; ``instrumentation``: where spans
    and metrics go.
    """

    @property
    def governor(self) -> RateGovernor:
        """The client's rate governor (its ``holding`` and ``rate_limited`` are read)."""
        ...

    @property
    def time_scale(self) -> float:
        """Real seconds per service second."""
        ...

    @property
    def poll_policy(self) -> PollPolicy:
        """The default poll policy."""
        ...

    @property
    def instrumentation(self) -> Instrumentation:
        """The hooks that report spans and metrics."""
        ...

    async def create(self, request: VideoRequest) -> Generation:
        """Send one create; returns the new generation."""
        ...

    async def get(self, generation_id: str) -> Generation:
        """Send one status request."""
        ...
