"""A request budget shared by every process on one API key, and the pace they learned.

One Redis token bucket per key name: ``rate`` tokens per second, at most ``burst`` saved up.
:meth:`SharedBudget.acquire` takes one token, sleeping (in this process, never in Redis) until
the bucket says one is available. :meth:`SharedBudget.publish_pace` lets the process whose
governor learned the server's real limit (from its 429s) share that pace; while it is
published (a small hash with a TTL) the bucket refills at ``min(rate, pace)``, so every other
process slows down without having to hit the limit itself. :meth:`SharedBudget.shared_pace`
reads it, for a local governor that wants to start at the learned pace.

Why one short Lua script and not the ``limits`` library: ``limits`` offers fixed and sliding
*window* counters (a window allows a full burst at each boundary, twice the rate for a
moment), its async Redis storage is built on a different Redis client (``coredis``) than the
one this package uses, and it has no notion of a rate that other processes change at run time.
The bucket here is twenty lines, refills continuously, reads the learned pace in the same
atomic step, and measures time with the Redis server's ``TIME`` — so workers whose clocks
disagree still share one honest budget.

asyncio only (``redis.asyncio``).
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
from typing import TYPE_CHECKING, Any

import anyio

from ._base import StoreError
from ._redis import DEFAULT_PREFIX, _require_asyncio, connect_redis, probe_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SharedBudget", "budget_name"]

# KEYS: bucket hash, pace hash, members zset; ARGV: rate, burst, cost, member. Returns the wait
# in seconds (a string: a Lua number would be truncated to an integer on its way back). Every
# call also stamps its member with the server's time (who is drawing on the budget now).
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local pace = tonumber(redis.call('HGET', KEYS[2], 'rps'))
if pace and pace > 0 and pace < rate then rate = pace end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts'))
if not tokens then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts',
           string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 600)
redis.call('PEXPIRE', KEYS[3], 600000)
return string.format('%.6f', wait)
"""

# KEYS: members zset; ARGV: window seconds. Members seen within the window, by the server's clock.
_MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


def budget_name(api_key: str) -> str:
    """A name for the budget of ``api_key`` that does not reveal it (SHA-256, 16 hex digits)."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


class SharedBudget:
    """A token bucket in Redis shared by every process that uses the same ``name``.

    ``rate`` requests per second with bursts of up to ``burst``; a pace published by any
    process (:meth:`publish_pace`) lowers the rate for all of them until it expires.

    ``async with await SharedBudget.open(url, name=budget_name(key), rate=10) as budget:``
    then ``await budget.acquire()`` before each request.
    """

    def __init__(
        self,
        client: Redis,
        *,
        name: str,
        rate: float,
        burst: float = 1.0,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise StoreError("a shared budget needs rate > 0 and burst >= 1")
        self._r = client
        self.name = name
        self.rate = float(rate)
        self.burst = float(burst)
        self._bucket_key = f"{prefix}:budget:{{{name}}}:bucket"
        self._pace_key = f"{prefix}:budget:{{{name}}}:pace"
        self._members_key = f"{prefix}:budget:{{{name}}}:members"
        self._script = client.register_script(_BUCKET)
        self._members = client.register_script(_MEMBERS)
        self._me = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    @classmethod
    async def open(
        cls, url: str, *, name: str, rate: float, burst: float = 1.0, timeout: float = 5.0
    ) -> SharedBudget:
        """Connect to the Redis at ``url`` (fails fast with ``StoreUnavailableError``)."""
        _require_asyncio()
        await probe_redis(url, timeout=timeout)
        return cls(connect_redis(url), name=name, rate=rate, burst=burst)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._r.aclose()

    async def __aenter__(self) -> SharedBudget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def try_acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if there are: 0.0; else the seconds to wait (nothing taken)."""
        reply: Any = await self._script(
            keys=[self._bucket_key, self._pace_key, self._members_key],
            args=[self.rate, self.burst, cost, self._me],
        )
        return float(reply)

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until the shared bucket grants ``cost`` tokens, then take them."""
        while True:
            wait = await self.try_acquire(cost)
            if wait <= 0:
                return
            # A little jitter so processes that were refused together do not return together.
            await anyio.sleep(wait * (1.0 + 0.2 * random.random()))

    async def publish_pace(self, rps: float, *, ttl: float = 60.0) -> None:
        """Share the pace this process learned (requests/s) with every process, for ``ttl`` s."""
        if rps <= 0:
            raise StoreError("a published pace must be > 0 requests per second")
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._pace_key, mapping={"rps": repr(float(rps)), "by": self._me})
        pipe.pexpire(self._pace_key, max(1, int(ttl * 1000)))
        await pipe.execute()

    async def members(self, window: float = 10.0) -> int:
        """How many budgets (processes) took or asked for tokens in the last ``window`` s.

        A pace one process learned from its 429s is its *share* of the key's limit; the
        governor multiplies it by this count before publishing it as the whole key's pace.
        """
        reply: Any = await self._members(keys=[self._members_key], args=[window])
        return max(1, int(reply))

    async def shared_pace(self) -> float | None:
        """The pace some process published and that has not expired, or ``None``."""
        value = await self._r.hget(self._pace_key, "rps")
        return None if value is None else float(value)
