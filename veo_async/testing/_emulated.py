"""An AsyncVeoClient wired in-process (no sockets) to the emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from .._client import AsyncVeoClient

if TYPE_CHECKING:
    from ..emulator import Emulator, EmulatorConfig

__all__ = ["EMULATED_BASE_URL", "EmulatedService", "emulated"]

#: The base URL the in-process emulator answers on (a loopback name: no real socket is used).
EMULATED_BASE_URL = "http://veo-emulator.localhost"


@dataclass
class EmulatedService:
    """What :func:`emulated` yields: the ``client`` and the ``emulator`` (config, ledger)."""

    client: AsyncVeoClient
    """A client whose requests (API and video downloads) go to the in-process emulator."""
    emulator: Emulator
    """The emulator: ``.stats()``, ``.ledger``, ``.configure(...)``, ``.reset()``."""

    def stats(self) -> dict[str, Any]:
        """The emulator's ledger snapshot (``GET /_emulator/stats``)."""
        result: dict[str, Any] = self.emulator.stats()
        return result


@contextlib.asynccontextmanager
async def emulated(
    config: EmulatorConfig | None = None,
    *,
    time_scale: float = 0.01,
    seed: int = 0,
    api_key: str = "emulator",
    **client_options: Any,
) -> AsyncIterator[EmulatedService]:
    """Run an emulator in-process and yield a client talking to it through ``ASGITransport``.

    ``config`` (an :class:`~veo_async.emulator.EmulatorConfig`) wins over ``time_scale`` and
    ``seed``. Extra keyword arguments go to :class:`~veo_async.AsyncVeoClient`.

    >>> async with emulated() as service:                          # doctest: +SKIP
    ...     video = await service.client.generate(prompt="a red fox")
    """
    try:
        from ..emulator import Emulator, EmulatorConfig, create_app
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the emulator needs its extra: pip install 'veo-async[emulator]'"
        ) from exc
    cfg = config or EmulatorConfig(time_scale=time_scale, seed=seed)
    emulator = Emulator(cfg)
    app = create_app(emulator=emulator)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=EMULATED_BASE_URL) as http:
        options: dict[str, Any] = {
            "base_url": EMULATED_BASE_URL,
            "time_scale": cfg.time_scale,
            **client_options,
        }
        async with AsyncVeoClient(api_key, http_client=http, **options) as client:
            yield EmulatedService(client=client, emulator=emulator)
