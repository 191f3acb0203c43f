"""Group commit for webhook deliveries.

Every accepted webhook must be committed before it is acknowledged. One INSERT and one commit
per request would take a pool connection per request in flight (a burst of 32 requests queues
on the pool behind the intake workers) and a WAL flush each. Instead, requests that arrive
together are written by one multi-row INSERT in one transaction: each request still gets its
answer only after *its* row is committed, a lone request is written at once (no added wait),
and a burst costs a few round trips instead of one per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)
INTAKE_BATCHES_IN_FLIGHT = 2

# Ids are taken from the sequence in the materialised CTE so each input row's position maps
# to its id without relying on the order of RETURNING; conflicting delivery ids (a replayed
# PagerDuty webhook, also twice in one batch) insert nothing and map to NULL.
BATCH_INSERT = """
WITH input AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('webhook_inbox', 'id')) AS id, t.ord, t.source,
           t.delivery_id, t.order_key, t.body
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
         WITH ORDINALITY AS t(source, delivery_id, order_key, body, ord)
), inserted AS (
    INSERT INTO webhook_inbox (id, source, delivery_id, order_key, body)
    SELECT id, source, delivery_id, order_key, body::jsonb FROM input ORDER BY ord
    ON CONFLICT (source, delivery_id) WHERE delivery_id IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT input.ord, inserted.id FROM input LEFT JOIN inserted USING (id) ORDER BY input.ord
"""


@dataclass(slots=True)
class _Pending:
    source: str
    delivery_id: str | None
    order_key: str | None
    body: str
    done: asyncio.Future[int | None]


class InboxWriter:
    """Writes deliveries in batches of whatever is waiting, at most ``parallel`` batches at
    a time (so intake never holds more than that many pool connections)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        parallel: int = INTAKE_BATCHES_IN_FLIGHT,
        max_rows: int = 64,
        max_bytes: int = 8 << 20,
    ) -> None:
        self._pool = pool
        self._parallel = parallel
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._queue: deque[_Pending] = deque()
        self._flushers: set[asyncio.Task[None]] = set()

    async def insert(
        self, source: str, body: str, delivery_id: str | None = None, order_key: str | None = None
    ) -> int | None:
        """Store one delivery durably; its id, or None when the delivery id was stored before.
        Deliveries with the same ``order_key`` are processed in the order stored.
        Raises what the database raised when the row could not be committed."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(source, delivery_id, order_key, body, done))
        if len(self._flushers) < self._parallel:
            task = asyncio.create_task(self._flush_while_pending())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await done

    async def _flush_while_pending(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                await self._write(batch)
            except BaseException as exc:  # the waiting requests get the error, never a hang
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

    def _take(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        size = len(batch[0].body)
        while self._queue and len(batch) < self._max_rows:
            size += len(self._queue[0].body)
            if size > self._max_bytes:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            ids = await self._insert(batch)
        except asyncpg.DataError:
            if len(batch) == 1:
                raise
            # One body Postgres will not store (e.g. a \u0000 escape jsonb rejects) must not
            # fail the others: write them one by one so only that request gets the error.
            log.warning("inbox.batch_rejected", extra={"rows": len(batch)})
            for item in batch:
                try:
                    (row_id,) = await self._insert([item])
                except asyncpg.DataError as exc:
                    if not item.done.done():
                        item.done.set_exception(exc)
                    continue
                if not item.done.done():
                    item.done.set_result(row_id)
            return
        for item, row_id in zip(batch, ids, strict=True):
            if not item.done.done():  # a request cancelled meanwhile no longer waits
                item.done.set_result(row_id)

    async def _insert(self, batch: list[_Pending]) -> list[int | None]:
        rows = await self._pool.fetch(
            BATCH_INSERT,
            [item.source for item in batch],
            [item.delivery_id for item in batch],
            [item.order_key for item in batch],
            [item.body for item in batch],
        )
        return [row["id"] for row in rows]
