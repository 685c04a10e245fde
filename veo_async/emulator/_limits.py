"""Authentication and the per-key token bucket: pure rules, no replies, no ledger."""

from __future__ import annotations

from ._config import EmulatorConfig
from ._jobs import KeyState


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or ``None``."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def bucket_capacity(config: EmulatorConfig) -> float:
    """Tokens a key's bucket holds when full."""
    if config.rate_limit_burst is not None:
        return config.rate_limit_burst
    return max(1.0, config.rate_limit or 1.0)


def take_token(state: KeyState, now: float, config: EmulatorConfig) -> float | None:
    """Take a token; return ``None`` or the wall seconds until one is available."""
    limit = config.rate_limit
    if limit is None:
        return None
    rate = limit / config.time_scale
    capacity = bucket_capacity(config)
    tokens = min(capacity, state.tokens + max(0.0, now - state.refilled_at) * rate)
    state.refilled_at = now
    if tokens >= 1.0 - 1e-6:  # tolerate float rounding of epoch timestamps
        state.tokens = max(0.0, tokens - 1.0)
        return None
    state.tokens = tokens
    return (1.0 - tokens) / rate
