"""Redis coordination: short locks, counting semaphores, rate-limit buckets and first-time keys
shared by replicas.

Redis holds no state of record. Losing it can cost a duplicate Slack update (two publishers
at once) but never an alert: Postgres decides what exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.core.ports import Reservation

PREFIX = "incidentbot:"
LEASE_STOP_WAIT_S = 1.0

# Compare-and-delete: release a lock only if we still own it.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Take a lock if it is free, or held by an earlier process of this replica (ARGV[3], the
# replica's prefix, without this process's own prefix ARGV[4]): a replica name is held by one
# running process at a time, so an earlier holder of the same name has died (kill -9, a
# container restart in the same pod) and its locks need not lapse first.
_TAKE = """
local held = redis.call('get', KEYS[1])
if held and not (ARGV[3] ~= '' and string.sub(held, 1, #ARGV[3]) == ARGV[3]
                 and string.sub(held, 1, #ARGV[4]) ~= ARGV[4]) then
  return 0
end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return 1
"""

# Compare-and-extend: renew a lease only if we still own it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""

# A counting semaphore: a sorted set of holders scored by when their lease ends (Redis's own
# clock). Holders whose lease ended (a replica that died) are dropped before counting; a slot
# is taken only while fewer than ARGV[2] hold one.
_SLOT_TAKE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[3])
return 1
"""

# Extend a holder's lease, only while it still holds its slot.
_SLOT_RENEW = """
if not redis.call('zscore', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[2])
return 1
"""

# How many hold a slot now (lapsed leases not counted).
_SLOT_COUNT = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('zcount', KEYS[1], '(' .. now, '+inf')
"""

# Token bucket reservation: capacity ARGV[2], refill ARGV[1] tokens/s. Takes a token now or
# reserves a future one (balance may go negative) and returns ms to wait before using it.
# With a horizon ARGV[3] (ms, > 0) a token further out than that is not reserved: the answer
# is then negative, minus the ms after which one would fall within the horizon. Reservations
# outlive the process that made them, so without a horizon a replica killed while hundreds of
# its calls were queued leaves the bucket in debt for as long as those calls would have taken.
_BUCKET = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local cap = tonumber(ARGV[2])
local state = redis.call('hmget', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or cap
local ts = tonumber(state[2]) or now
tokens = math.min(cap, tokens + (now - ts) * rate) - 1
local horizon = tonumber(ARGV[3]) or 0
if horizon > 0 and -tokens / rate > horizon then
  return -math.max(1, math.ceil(-tokens / rate - horizon))
end
redis.call('hset', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('pexpire', KEYS[1], math.ceil(cap / rate) + 60000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens / rate)
"""


def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)


class Coordination:
    def __init__(self, client: aioredis.Redis, replica: str | None = None) -> None:
        """`replica`: this process's replica name, when it is stable across restarts and held
        by one process at a time (a pod's name); locks an earlier process of the same name held
        are then taken over at once."""
        self.client = client
        # Lock values: "<replica>|<this process>|<random>", so a holder's successor knows them.
        self._replica_prefix = f"{replica}|" if replica else ""
        self._own_prefix = f"{self._replica_prefix}{secrets.token_hex(6)}|"
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._bucket = client.register_script(_BUCKET)
        self._slot_take = client.register_script(_SLOT_TAKE)
        self._slot_renew = client.register_script(_SLOT_RENEW)
        self._slot_count = client.register_script(_SLOT_COUNT)

    async def ping(self) -> None:
        await cast(Any, self.client.ping())

    async def try_lock(self, name: str, ttl_ms: int) -> str | None:
        """Take a lock for at most ttl_ms; returns the owner token, or None if held."""
        token = self._own_prefix + secrets.token_hex(8)
        ok = await self._take(
            keys=[PREFIX + "lock:" + name], args=[token, ttl_ms, self._replica_prefix, self._own_prefix]
        )
        return token if ok else None

    async def release(self, name: str, token: str) -> None:
        await self._release(keys=[PREFIX + "lock:" + name], args=[token])

    @asynccontextmanager
    async def lease(self, name: str, ttl_ms: int) -> AsyncIterator[str | None]:
        """A lock renewed while its holder is alive: it lapses `ttl_ms` after a holder dies
        (instead of a long fixed lifetime), yet a long-running holder keeps it. Yields None
        when someone else holds it."""
        token = await self.try_lock(name, ttl_ms)
        if token is None:
            yield None
            return
        key = PREFIX + "lock:" + name
        try:
            async with self._kept(name, lambda: self._renew(keys=[key], args=[token, ttl_ms]), ttl_ms):
                yield token
        finally:
            await self.release(name, token)

    @asynccontextmanager
    async def slot(self, name: str, limit: int, ttl_ms: int) -> AsyncIterator[str | None]:
        """One of `limit` slots shared by every replica (a counting semaphore), renewed while
        its holder is alive and lapsing `ttl_ms` after it dies. Yields None when all are held."""
        key = PREFIX + "slots:" + name
        token = self._own_prefix + secrets.token_hex(8)
        if not await self._slot_take(keys=[key], args=[token, limit, ttl_ms]):
            yield None
            return
        try:
            async with self._kept(name, lambda: self._slot_renew(keys=[key], args=[token, ttl_ms]), ttl_ms):
                yield token
        finally:
            await self.client.zrem(key, token)

    async def slots_held(self, name: str) -> int:
        """How many slots of `name` are held now (on every replica)."""
        return int(await self._slot_count(keys=[PREFIX + "slots:" + name]))

    @asynccontextmanager
    async def _kept(
        self, name: str, renew: Callable[[], Awaitable[object]], ttl_ms: int
    ) -> AsyncIterator[None]:
        """Renew a lease every third of its lifetime while the body runs."""
        stop = asyncio.Event()
        keeper = asyncio.create_task(self._keep(renew, ttl_ms, stop), name=f"lease-{name}")
        try:
            yield
        finally:
            # The event ends the keeper even if a cancellation is swallowed inside the Redis
            # client; waiting is bounded and never re-raises the keeper's cancellation here.
            stop.set()
            keeper.cancel()
            await asyncio.wait({keeper}, timeout=LEASE_STOP_WAIT_S)

    async def _keep(self, renew: Callable[[], Awaitable[object]], ttl_ms: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ttl_ms / 3000)
                return
            try:
                renewed = await renew()
            except (RedisError, OSError):
                continue  # Redis away: the lease may lapse; Postgres still decides what exists
            if not renewed:
                return  # lost (expired while Redis was away): nothing left to keep

    async def take_token(self, bucket: str, rate_per_s: float, burst: int) -> float:
        """Token-bucket reservation shared by every replica; seconds to wait before the call."""
        wait_ms = await self._bucket(keys=[PREFIX + "rate:" + bucket], args=[rate_per_s, burst])
        return int(wait_ms) / 1000

    async def reserve_token(
        self, bucket: str, rate_per_s: float, burst: int, horizon_s: float
    ) -> Reservation:
        """A token usable within `horizon_s` (granted, seconds to wait), or none reserved
        (refused, seconds after which to ask again): the bucket is never reserved further
        ahead than the horizon, so a reserver that dies delays the others by at most that."""
        horizon_ms = max(1, round(horizon_s * 1000))
        answer = int(
            await self._bucket(keys=[PREFIX + "rate:" + bucket], args=[rate_per_s, burst, horizon_ms])
        )
        return Reservation(answer >= 0, abs(answer) / 1000)

    async def first_time(self, key: str, ttl_s: int) -> bool:
        """True once per key within ttl_s (deduplication of deliveries and echoes)."""
        return bool(await self.client.set(PREFIX + "seen:" + key, "1", nx=True, ex=ttl_s))

    async def remember(self, key: str, ttl_s: int) -> None:
        """Note that `key` happened (for `remembered`), for ttl_s."""
        await self.client.set(PREFIX + "mark:" + key, "1", ex=ttl_s)

    async def remembered(self, key: str) -> bool:
        return bool(await self.client.exists(PREFIX + "mark:" + key))

    async def first_use(self, request_key: str, window_s: int) -> bool:
        """True the first time a signed request (e.g. Slack's timestamp and signature) is seen
        within the window its signature is valid for, on any replica; False for a replay.
        One atomic SET NX: two replicas receiving the same request cannot both win."""
        return bool(await self.client.set(PREFIX + "request:" + request_key, "1", nx=True, ex=window_s))

    async def forget_use(self, request_key: str) -> None:
        """Undo first_use for a request that could not be handled, so its retry is."""
        await self.client.delete(PREFIX + "request:" + request_key)

    async def aclose(self) -> None:
        await self.client.aclose()
