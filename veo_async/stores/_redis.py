"""The distributed job store: Redis Streams, hashes and Lua, on ``redis.asyncio``.

What lives in Redis, for a batch ``B`` (every key carries the hash tag ``{B}``, so a batch
lives in one cluster slot)::

    veo-async:{B}:job:<key>   hash    one job: state, request, generation id, outcome, file
    veo-async:{B}:order       zset    job keys by order of arrival
    veo-async:{B}:counts      hash    jobs per state (kept by the same scripts that move jobs)
    veo-async:{B}:work        stream  one entry per job to work on; consumer group "workers"
    veo-async:{B}:events      stream  audit trail (capped at about 100,000 entries)
    veo-async:{B}:meta        hash    batch-level values (fingerprint, source, target)

Work is handed out with ``XREADGROUP`` (each entry goes to exactly one worker, and stays in its
pending list until ``XACK``); a worker renews its entries (an ``XCLAIM`` to itself, checked
against ``XPENDING`` inside a script so a lease it already lost is never taken back); and
``XAUTOCLAIM`` moves the entries a dead worker stopped renewing to a live one. Idle times are
measured by the Redis server's clock, so a worker whose clock is off by minutes changes
nothing; timestamps in job hashes come from the server's ``TIME`` too.

Every state change is one Lua script (atomic on the server) that checks the current state,
writes the fields, keeps ``counts`` and appends to ``events``. Scripts are idempotent under the
client's reconnect-and-retry (each call carries a token), so a reply lost to a broken connection
never turns a won intent into a lost one.

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` for "an intent
is on disk before the create is sent" (``everysec`` may lose the last second on a power cut).

``redis.asyncio`` runs on asyncio only: a :class:`RedisStore` cannot be used under trio.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._base import (
    Event,
    JobState,
    StoredJob,
    StoreError,
    StoreUnavailableError,
    WorkItem,
    WorkKind,
    plan_transition,
    redact_url,
    validate_batch_id,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_PREFIX", "GROUP", "RedisStore", "connect_redis"]

DEFAULT_PREFIX = "veo-async"
GROUP = "workers"
_CHUNK = 500

_NOW = """
local _t = redis.call('TIME')
local now = _t[1] .. '.' .. string.format('%06d', tonumber(_t[2]))
"""

# KEYS: order, counts, work, job hashes...; ARGV: state, kind, then (key, request, gid) per job
_ADD = (
    _NOW
    + """
local added = {}
local seq = redis.call('ZCARD', KEYS[1])
for i = 4, #KEYS do
  local a = 3 + (i - 4) * 3
  local key = ARGV[a]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    seq = seq + 1
    redis.call('HSET', KEYS[i], 'key', key, 'seq', seq, 'state', ARGV[1], 'attempts', 0,
               'previous_ids', '[]', 'updated_at', now)
    if ARGV[a + 1] ~= '' then redis.call('HSET', KEYS[i], 'request', ARGV[a + 1]) end
    if ARGV[a + 2] ~= '' then redis.call('HSET', KEYS[i], 'generation_id', ARGV[a + 2]) end
    redis.call('ZADD', KEYS[1], seq, key)
    redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
    redis.call('XADD', KEYS[3], '*', 'key', key, 'kind', ARGV[2])
    added[#added + 1] = key
  end
end
return added
"""
)

# KEYS: job, counts, events; ARGV: worker, token, key
_CLAIM = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'submitting' and redis.call('HGET', KEYS[1], 'claim_token') == ARGV[2] then
  return 1
end
if state ~= 'pending' and state ~= 'refused' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'submitting', 'owner', ARGV[1], 'claim_token', ARGV[2],
           'intent_at', now, 'updated_at', now)
redis.call('HDEL', KEYS[1], 'error')
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HINCRBY', KEYS[2], state, -1)
redis.call('HINCRBY', KEYS[2], 'submitting', 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'key', ARGV[3], 'event', 'intent',
           'detail', ARGV[1], 'at', now)
return 1
"""
)

# KEYS: job, counts, events, work
# ARGV: key, event, target, stamp, reset, token, detail, nsources, sources..., nset,
#       (field, value)..., fields to delete...
_TRANSITION = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if redis.call('HGET', KEYS[1], 'last_op') == ARGV[6] then return 1 end
local n = tonumber(ARGV[8])
local ok = false
for i = 9, 8 + n do if ARGV[i] == state then ok = true end end
if not ok then return 0 end
if ARGV[5] == '1' then
  local gid = redis.call('HGET', KEYS[1], 'generation_id')
  if gid then
    local prev = cjson.decode(redis.call('HGET', KEYS[1], 'previous_ids') or '[]')
    prev[#prev + 1] = gid
    redis.call('HSET', KEYS[1], 'previous_ids', cjson.encode(prev))
  end
  redis.call('XADD', KEYS[4], '*', 'key', ARGV[1], 'kind', 'submit')
end
local nset = tonumber(ARGV[9 + n])
local first = 10 + n
for i = first, first + 2 * nset - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = first + 2 * nset, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'updated_at', now, 'last_op', ARGV[6])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[4], now) end
if state ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[2], state, -1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', 'key', ARGV[1], 'event', ARGV[2],
           'detail', ARGV[7], 'at', now)
return 1
"""
)

# KEYS: work; ARGV: group, worker, entry ids...
_HEARTBEAT = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""


def connect_redis(url: str, *, reconnect_attempts: int = 12) -> Redis:
    """A ``redis.asyncio`` client for ``url`` that reconnects with backoff (about 10 s in all).

    Raises :class:`StoreError` with an install hint when the ``redis`` extra is missing.
    """
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError(
            "a redis:// store needs the redis client: pip install 'veo-async[redis]'"
        ) from None
    client: Redis = Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), reconnect_attempts),
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )
    return client


async def probe_redis(url: str, *, timeout: float = 5.0) -> None:
    """Fail fast with :class:`StoreUnavailableError` when nothing answers ``PING`` at ``url``."""
    _require_asyncio()
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError(
            "a redis:// store needs the redis client: pip install 'veo-async[redis]'"
        ) from None

    probe: Redis = Redis.from_url(
        url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        await probe.ping()
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(
            f"cannot reach the Redis store at {redact_url(url)}: {type(exc).__name__}: "
            f"{_redact_message(str(exc), url)}; nothing was submitted",
            url=redact_url(url),
        ) from None
    finally:
        await probe.aclose()


def _redact_message(text: str, url: str) -> str:
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def _require_asyncio() -> None:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise StoreError(
            "RedisStore and SharedBudget run on asyncio only (redis.asyncio), not on trio"
        ) from None


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


class RedisStore:
    """A :class:`~veo_async.stores.JobStore` in Redis, shared by many processes and machines.

    Open with :meth:`open` (checks the server answers, creates the consumer group), close with
    :meth:`aclose`. asyncio only.
    """

    def __init__(
        self, client: Redis, url: str, batch_id: str, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._r = client
        self._url = url
        self.url = redact_url(url)
        self._batch = batch_id
        base = f"{prefix}:{{{batch_id}}}"
        self._job_prefix = base + ":job:"
        self._order = base + ":order"
        self._counts = base + ":counts"
        self._work = base + ":work"
        self._events = base + ":events"
        self._meta = base + ":meta"
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._transition = client.register_script(_TRANSITION)
        self._heartbeat = client.register_script(_HEARTBEAT)

    @property
    def batch_id(self) -> str:
        """The namespace of this batch (the ``{B}`` in every key)."""
        return self._batch

    @classmethod
    async def open(
        cls, url: str, *, batch_id: str, prefix: str = DEFAULT_PREFIX, timeout: float = 5.0
    ) -> RedisStore:
        """Connect to ``url`` (``redis://host:port/db``) for batch ``batch_id``.

        Raises :class:`StoreUnavailableError` (naming the URL without its password) when the
        server does not answer within ``timeout`` s, and :class:`StoreError` under trio.
        """
        validate_batch_id(batch_id)
        await probe_redis(url, timeout=timeout)
        store = cls(connect_redis(url), url, batch_id, prefix=prefix)
        try:
            await store._ensure_group()
        except BaseException:
            await store._r.aclose()
            raise
        return store

    async def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await self._call(self._r.xgroup_create(self._work, GROUP, id="0", mkstream=True))
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def aclose(self) -> None:
        """Close the connection pool (the data stays in Redis)."""
        await self._r.aclose()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, awaitable: Any) -> Any:
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            return await awaitable
        except (ConnectionError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"the Redis store at {self.url} stopped answering: {type(exc).__name__}",
                url=self.url,
            ) from exc

    # ------------------------------------------------------------------ meta

    async def get_meta(self, name: str) -> str | None:
        """A batch-level value, or ``None``."""
        value = await self._call(self._r.hget(self._meta, name))
        return None if value is None else str(value)

    async def set_meta(self, name: str, value: str) -> None:
        """Set a batch-level value."""
        await self._call(self._r.hset(self._meta, name, value))

    # ------------------------------------------------------------------ inputs

    async def _add_rows(self, rows: list[tuple[str, str, str]], state: str, kind: str) -> list[str]:
        added: list[str] = []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            keys = [self._order, self._counts, self._work]
            args: list[str] = [state, kind]
            for key, request, gid in chunk:
                keys.append(self._job_prefix + key)
                args += [key, request, gid]
            added += await self._call(self._add(keys=keys, args=args))
        return added

    async def add_inputs(self, inputs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Register ``(key, body)`` pairs as pending jobs (idempotent); returns the new keys."""
        rows = [(key, json.dumps(dict(body)), "") for key, body in inputs]
        return await self._add_rows(rows, JobState.PENDING.value, "submit")

    async def add_tracked(self, generation_ids: Iterable[str]) -> list[str]:
        """Register already-submitted generation ids to track; returns the new keys."""
        rows = [("id:" + gid, "", gid) for gid in generation_ids]
        return await self._add_rows(rows, JobState.SUBMITTED.value, "track")

    # ------------------------------------------------------------------ transitions

    async def claim_intent(self, key: str, worker: str) -> bool:
        """``pending``/``refused`` -> ``submitting`` for ``worker``; ``True`` for one caller."""
        won = await self._call(
            self._claim(
                keys=[self._job_prefix + key, self._counts, self._events],
                args=[worker, uuid.uuid4().hex, key],
            )
        )
        if int(won) < 0:
            raise StoreError(f"job {key} is not in batch {self._batch}")
        return int(won) == 1

    async def transition(self, key: str, event: Event, **fields: Any) -> bool:
        """Apply ``event`` to ``key`` (see :data:`~veo_async.stores.TRANSITIONS`)."""
        keys, args = self._transition_call(key, event, fields)
        done = await self._call(self._transition(keys=keys, args=args))
        if int(done) < 0:
            raise StoreError(f"job {key} is not in batch {self._batch}")
        return int(done) == 1

    async def transition_many(
        self,
        changes: Sequence[tuple[str, Event, Mapping[str, Any]]],
        *,
        worker: str | None = None,
        ack: Sequence[WorkItem] = (),
    ) -> list[bool]:
        """Several :meth:`transition` calls, then :meth:`ack` of ``ack`` for ``worker``, in
        one round trip (a pipeline, in that order; each transition atomic on its own, as one
        call would be). Returns whether each transition was applied, in order."""
        if not changes and not ack:
            return []
        calls = [self._transition_call(key, event, fields) for key, event, fields in changes]
        sha = self._transition.sha

        def build(pipe: Any) -> None:
            for keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            if ack:
                pipe.xack(self._work, GROUP, *[i.id for i in ack])

        replies = await self._scripted_pipeline(build)
        replies = replies[: len(changes)]
        for (key, _, _), done in zip(changes, replies, strict=True):
            if int(done) < 0:
                raise StoreError(f"job {key} is not in batch {self._batch}")
        return [int(done) == 1 for done in replies]

    async def _scripted_pipeline(self, build: Any) -> list[Any]:
        """Run the commands ``build(pipe)`` queues (``EVALSHA`` of this store's scripts among
        them) in one round trip, without the ``SCRIPT EXISTS`` round trip ``redis.asyncio``
        adds before every pipeline that runs a registered script. A server that lost its
        scripts (restarted) answers ``NOSCRIPT``: they are loaded and the pipeline runs once
        more (each script is idempotent under a retry: its call carries a token)."""
        from redis.exceptions import NoScriptError

        for _attempt in range(2):
            pipe = self._r.pipeline(transaction=False)
            build(pipe)
            replies: list[Any] = await self._call(pipe.execute(raise_on_error=False))
            if not any(isinstance(r, NoScriptError) for r in replies):
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return replies
            for script in (self._add, self._claim, self._transition, self._heartbeat):
                script.sha = await self._call(self._r.script_load(script.script))
        raise StoreError(f"the Redis store at {self.url} keeps losing its scripts")

    def _transition_call(
        self, key: str, event: Event, fields: Mapping[str, Any]
    ) -> tuple[list[str], list[str]]:
        """The transition script's keys and arguments for ``event`` on ``key``."""
        sources, target, values, rule = plan_transition(event, dict(fields))
        setting = {k: v for k, v in values.items() if v is not None}
        deleting = [k for k, v in values.items() if v is None]
        if event is Event.RESET:
            deleting += ["claim_token"]
        args: list[str] = [
            key,
            event.value,
            target.value,
            rule.stamp or "",
            "1" if event is Event.RESET else "0",
            uuid.uuid4().hex,
            json.dumps({k: v for k, v in fields.items() if v is not None}, default=str),
            str(len(sources)),
            *sorted(s.value for s in sources),
            str(len(setting)),
        ]
        for name, value in setting.items():
            args += [name, _text(value)]
        args += deleting
        return [self._job_prefix + key, self._counts, self._events, self._work], args

    # ------------------------------------------------------------------ reads

    @staticmethod
    def _job(data: Mapping[str, str]) -> StoredJob:
        def num(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        size = data.get("size")
        request = data.get("request")
        return StoredJob(
            key=data["key"],
            request=None if request is None else json.loads(request),
            state=JobState(data["state"]),
            seq=int(data["seq"]),
            generation_id=data.get("generation_id"),
            status=data.get("status"),
            video_url=data.get("video_url"),
            credits=num("credits"),
            error=data.get("error"),
            file=data.get("file"),
            sha256=data.get("sha256"),
            size=None if size is None else int(size),
            owner=data.get("owner"),
            previous_ids=json.loads(data.get("previous_ids", "[]")),
            attempts=int(data.get("attempts", 0)),
            intent_at=num("intent_at"),
            submitted_at=num("submitted_at"),
            finished_at=num("finished_at"),
            downloaded_at=num("downloaded_at"),
            updated_at=num("updated_at"),
        )

    async def get(self, key: str) -> StoredJob | None:
        """One job, or ``None``."""
        data = await self._call(self._r.hgetall(self._job_prefix + key))
        return self._job(data) if data else None

    async def get_many(self, keys: Sequence[str]) -> list[StoredJob | None]:
        """Several jobs in one round trip (a pipeline), in the order of ``keys``."""
        if not keys:
            return []
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._job_prefix + key)
        rows = await self._call(pipe.execute())
        return [self._job(row) if row else None for row in rows]

    async def jobs(self) -> list[StoredJob]:
        """Every job of the batch, in order of arrival."""
        keys: list[str] = await self._call(self._r.zrange(self._order, 0, -1))
        result: list[StoredJob] = []
        for start in range(0, len(keys), 1000):
            pipe = self._r.pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.hgetall(self._job_prefix + key)
            rows = await self._call(pipe.execute())
            result += [self._job(row) for row in rows if row]
        return result

    async def counts(self) -> dict[JobState, int]:
        """Jobs per state, zeros included (kept by the transition scripts)."""
        raw: dict[str, str] = await self._call(self._r.hgetall(self._counts))
        result = dict.fromkeys(JobState, 0)
        for state, n in raw.items():
            result[JobState(state)] = int(n)
        return result

    # ------------------------------------------------------------------ work leases

    @staticmethod
    def _items(entries: Any) -> list[WorkItem]:
        items = []
        for entry_id, fields in entries or []:
            if entry_id is None or not fields:  # trimmed or deleted entry
                continue
            kind: WorkKind = "track" if fields.get("kind") == "track" else "submit"
            items.append(WorkItem(str(entry_id), fields["key"], kind))
        return items

    async def take_work(self, worker: str, *, count: int = 1, wait: float = 0.0) -> list[WorkItem]:
        """``XREADGROUP`` up to ``count`` new entries for ``worker`` (blocking up to ``wait`` s)."""
        block = max(1, int(wait * 1000)) if wait > 0 else None
        reply = await self._call(
            self._r.xreadgroup(GROUP, worker, {self._work: ">"}, count=count, block=block)
        )
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3
            entries = [e for streams in reply.values() for group in streams for e in group]
            return self._items(entries)
        return [item for _stream, entries in reply for item in self._items(entries)]

    async def heartbeat(self, worker: str, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Renew ``worker``'s entries (idle time back to 0); returns those it lost."""
        if not items:
            return []
        lost = await self._call(
            self._heartbeat(keys=[self._work], args=[GROUP, worker, *[i.id for i in items]])
        )
        gone = set(lost)
        return [item for item in items if item.id in gone]

    async def reclaim(self, worker: str, *, min_idle: float, count: int = 100) -> list[WorkItem]:
        """``XAUTOCLAIM`` entries idle for ``min_idle`` s (by the server's clock) to ``worker``."""
        items: list[WorkItem] = []
        start = "0-0"
        while len(items) < count:
            reply = await self._call(
                self._r.xautoclaim(
                    self._work,
                    GROUP,
                    worker,
                    int(min_idle * 1000),
                    start_id=start,
                    count=count - len(items),
                )
            )
            start, entries = str(reply[0]), reply[1]
            items += self._items(entries)
            if start == "0-0":
                break
        return items

    async def ack(self, worker: str, items: Sequence[WorkItem]) -> None:
        """``XACK`` entries: their jobs need no worker any more."""
        if items:
            await self._call(self._r.xack(self._work, GROUP, *[i.id for i in items]))

    async def release(self, worker: str, items: Sequence[WorkItem]) -> None:
        """Give leases back untaken, acked or not (``XACK`` them and ``XADD`` their jobs
        again, in one round trip), so the next :meth:`take_work` (any worker) gets them."""
        if not items:
            return
        pipe = self._r.pipeline(transaction=True)
        pipe.xack(self._work, GROUP, *[i.id for i in items])
        for item in items:
            pipe.xadd(self._work, {"key": item.key, "kind": item.kind})
        await self._call(pipe.execute())

    async def pending(self) -> dict[str, int]:
        """Leased entries per worker (``XPENDING`` summary): who holds how many jobs now."""
        summary = await self._call(self._r.xpending(self._work, GROUP))
        return {str(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []}
