"""A request budget shared by every process on one API key, and the pace they learned.

One schedule in Redis per key name, kept the way the generic cell rate algorithm (GCRA, as in
``redis-cell`` and the Go ``throttled`` package) keeps it: a *theoretical arrival time* (TAT),
the moment the key's budget is promised until. :meth:`SharedBudget.acquire` makes one atomic
script call that reserves the next slot (the TAT moves on by ``1 / rate``) and returns how long
until that slot begins; the caller sleeps exactly that and sends. There is no refusal and no
second round trip, so a caller that wakes late (event-loop lag, a loaded machine) loses
nothing: the next slot was reserved from the schedule, not from when anyone woke, and the
key's rate is kept. Slots stay ``1 / rate`` apart; ``burst`` is the tolerance (a budget idle
for a while lets ``burst`` requests go at once, then spaces them again).

:meth:`SharedBudget.publish_pace` lets the process whose governor learned the server's real
limit (from its 429s) share that pace; while it is published (a small hash with a TTL) slots
are ``1 / min(rate, pace)`` apart, so every other process slows down without having to hit the
limit itself. :meth:`SharedBudget.shared_pace` reads it, for a local governor that wants to
start at the learned pace. Every reservation stamps its process in a members set (Redis's
clock), which :meth:`SharedBudget.members` counts.

Why one short Lua script and not the ``limits`` library: ``limits`` offers fixed and sliding
*window* counters (a window allows a full burst at each boundary, twice the rate for a
moment) that refuse and let the caller retry (which loses the rate to every late retry), its
async Redis storage is built on a different Redis client (``coredis``) than the one this
package uses, and it has no notion of a rate that other processes change at run time. The
script here is a few lines, reads the learned pace in the same atomic step, and measures time
with the Redis server's ``TIME`` (in whole microseconds) — so workers whose clocks disagree
still share one honest schedule: a caller is only ever told a *duration*.

asyncio only (``redis.asyncio``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import socket
from typing import TYPE_CHECKING, Any

import anyio

from ._base import StoreError
from ._redis import DEFAULT_PREFIX, _require_asyncio, connect_redis, probe_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_MAX_AHEAD", "SharedBudget", "budget_name"]

#: Seconds of the key's budget that may be promised ahead of now (see ``max_ahead``).
DEFAULT_MAX_AHEAD = 5.0

# KEYS: TAT string, pace hash, members zset; ARGV: rate, burst, cost, member, max_wait,
# max_ahead (seconds; a negative max_wait means "any wait"). Returns {reserved (1/0), seconds}
# (seconds as a string: a Lua number would be truncated to an integer on its way back):
# reserved -> the wait until the reserved slot; not reserved -> the wait until a slot is due
# (max_wait exceeded) or until a one-request slot would be within max_ahead again (queued:
# the wait such a slot would have, the burst tolerance deducted). Times are integer
# microseconds of the server's clock (exact in a double). Every call stamps its member.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[5]) * 1000000
local max_ahead = tonumber(ARGV[6]) * 1000000
redis.call('ZADD', KEYS[3], now / 1000000, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now / 1000000 - 600)
redis.call('PEXPIRE', KEYS[3], 600000)
local pace = tonumber(redis.call('HGET', KEYS[2], 'rps'))
if pace and pace > 0 and pace < rate then rate = pace end
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = math.floor(tat + cost * interval + 0.5)
local wait = new_tat - burst * interval - now
if wait < 0 then wait = 0 end
if max_wait >= 0 and wait > max_wait then
  return {0, string.format('%.6f', wait / 1000000)}
end
local queued = tat - (burst - 1) * interval - now
if queued > max_ahead then
  return {0, string.format('%.6f', (queued - max_ahead) / 1000000)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000) + 60000)
return {1, string.format('%.6f', wait / 1000000)}
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
    """A request schedule in Redis shared by every process that uses the same ``name``.

    ``rate`` requests per second, slots ``1 / rate`` apart, with a tolerance of ``burst``
    requests at once after an idle spell; a pace published by any process
    (:meth:`publish_pace`) lowers the rate for all of them until it expires.

    ``max_ahead``: no slot is promised to begin more than this many seconds from now. A
    taker that finds the schedule booked further ahead waits (in this process, with a
    little spread) until it is within ``max_ahead`` again, then reserves. So takers that
    crash or are cancelled after reserving waste their own slots and can never have booked
    more than ``max_ahead`` seconds (plus the burst and one request) of the key's budget;
    with the rate governor's one reservation per process in flight, N processes keep the
    schedule only N slots ahead anyway.

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
        max_ahead: float = DEFAULT_MAX_AHEAD,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)) or burst < 1 or not max_ahead >= 0:
            raise StoreError(
                "a shared budget needs a finite rate > 0, burst >= 1 and max_ahead >= 0"
            )
        self._r = client
        self.name = name
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_ahead = float(max_ahead)
        self._tat_key = f"{prefix}:budget:{{{name}}}:tat"
        self._pace_key = f"{prefix}:budget:{{{name}}}:pace"
        self._members_key = f"{prefix}:budget:{{{name}}}:members"
        self._script = client.register_script(_RESERVE)
        self._members = client.register_script(_MEMBERS)
        self._me = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        name: str,
        rate: float,
        burst: float = 1.0,
        timeout: float = 5.0,
        max_ahead: float = DEFAULT_MAX_AHEAD,
    ) -> SharedBudget:
        """Connect to the Redis at ``url`` (fails fast with ``StoreUnavailableError``)."""
        _require_asyncio()
        await probe_redis(url, timeout=timeout)
        return cls(connect_redis(url), name=name, rate=rate, burst=burst, max_ahead=max_ahead)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._r.aclose()

    async def __aenter__(self) -> SharedBudget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, cost: float, max_wait: float) -> tuple[bool, float]:
        if not cost > 0:
            raise StoreError("a shared budget's cost must be > 0")
        reply: Any = await self._script(
            keys=[self._tat_key, self._pace_key, self._members_key],
            args=[self.rate, self.burst, cost, self._me, max_wait, self.max_ahead],
        )
        return bool(int(reply[0])), float(reply[1])

    async def try_acquire(self, cost: float = 1.0) -> float:
        """Take a slot only if one is due now: 0.0 (taken); else the seconds until the next
        slot would begin, and nothing is reserved.

        Unlike :meth:`acquire` this never promises a future slot: a caller that polls it and
        sleeps in between gets the rate only as well as it wakes on time (the old
        refuse-and-retry behaviour).
        """
        reserved, wait = await self._call(cost, 0.0)
        return 0.0 if reserved else max(wait, 1e-6)

    async def reserve(self, cost: float = 1.0) -> float:
        """Reserve the next slot and return the seconds until it begins (0.0: now).

        The caller must not send before that; a slot not used is lost (nobody else gets it).
        While the schedule is promised more than ``max_ahead`` seconds ahead this waits (here,
        in this process) before reserving. :meth:`acquire` is this plus the sleep.
        """
        while True:
            reserved, wait = await self._call(cost, -1.0)
            if reserved:
                return wait
            # Over the cap: the schedule is full for max_ahead seconds, so waking a little
            # late costs no capacity; the spread keeps waiting takers from all coming back at
            # the same moment.
            await anyio.sleep(wait + random.random() * min(0.1 * self.max_ahead, 1.0))

    async def acquire(self, cost: float = 1.0) -> None:
        """Reserve the next slot and sleep until it begins (one round trip to Redis).

        Cancelled while sleeping, the caller just loses its slot.
        """
        wait = await self.reserve(cost)
        if wait > 0:
            await anyio.sleep(wait)

    async def publish_pace(self, rps: float, *, ttl: float = 60.0) -> None:
        """Share the pace this process learned (requests/s) with every process, for ``ttl`` s."""
        if rps <= 0:
            raise StoreError("a published pace must be > 0 requests per second")
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._pace_key, mapping={"rps": repr(float(rps)), "by": self._me})
        pipe.pexpire(self._pace_key, max(1, int(ttl * 1000)))
        await pipe.execute()

    async def members(self, window: float = 10.0) -> int:
        """How many budgets (processes) reserved or asked for a slot in the last ``window`` s.

        A pace one process learned from its 429s is its *share* of the key's limit; the
        governor multiplies it by this count before publishing it as the whole key's pace.
        """
        reply: Any = await self._members(keys=[self._members_key], args=[window])
        return max(1, int(reply))

    async def shared_pace(self) -> float | None:
        """The pace some process published and that has not expired, or ``None``."""
        value = await self._r.hget(self._pace_key, "rps")
        return None if value is None else float(value)
