"""Webhook deliveries: stored durably before they are acknowledged, then claimed in order by
the intake workers.

Storing (``InboxWriter``): every accepted webhook must be committed before it is acknowledged.
One INSERT and one commit per request would take a pool connection per request in flight (a
burst of 32 requests queues on the pool behind the intake workers) and a WAL flush each.
Instead, requests that arrive together are written by one multi-row INSERT in one transaction:
each request still gets its answer only after *its* row is committed, a lone request is
written at once (no added wait), and a burst costs a few round trips instead of one per request.

Claiming (``Inbox.claim_delivery``): each delivery is applied in the transaction that holds
its claim, deliveries about one subject in the order they arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bot.obs import logs
from bot.store.incidents import IntakeTx

log = logs.logger(logs.Component.INBOX)
INTAKE_BATCHES_IN_FLIGHT = 2
# Deliveries one claim may pass over (each waiting for an older one of its subject) before it
# reports nothing ready; whoever finishes an older one claims again right after.
MAX_PASSED_OVER = 32

# Ids are taken from the sequence in the materialised CTE so each input row's position maps
# to its id without relying on the order of RETURNING; conflicting delivery ids (a PagerDuty
# event delivered again, also twice in one batch) insert nothing and map to NULL.
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


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    source: str
    body: dict[str, Any]
    received_at: datetime
    attempts: int


class Inbox:
    """Webhook deliveries: stored through ``intake_pool`` when given (the wiring gives a small
    pool of its own, so acknowledging never waits behind background work), claimed and
    marked through ``pool``."""

    def __init__(self, pool: asyncpg.Pool, *, intake_pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.writer = InboxWriter(intake_pool or pool)

    async def insert_delivery(
        self, source: str, body: str, delivery_id: str | None = None, subject: str | None = None
    ) -> int | None:
        """Durably store a webhook body (committed on return, batched with concurrent
        deliveries); None when this delivery id was stored before. The delivery id must come
        from the signed body (PagerDuty: ``event.id``), never from an unsigned header, or a
        replay with a fresh header would be stored again. Deliveries about the same
        ``subject`` (e.g. one Alertmanager group) are processed in the order they arrived."""
        order_key = hashlib.sha256(f"{source}\0{subject}".encode()).hexdigest()[:32] if subject else None
        return await self.writer.insert(source, body, delivery_id, order_key)

    @asynccontextmanager
    async def claim_delivery(self) -> AsyncIterator[tuple[InboxRow, IntakeTx] | None]:
        """Lock the oldest unprocessed delivery for this transaction (SKIP LOCKED, so
        workers and replicas each take a different one); commit on clean exit.

        Deliveries about one subject are applied in arrival order: a delivery with an older
        one of its subject still unprocessed (being applied by another worker, or backing off
        after a failure) is passed over, and stays locked by this transaction until it ends,
        which is harmless: it is not due before the older one anyway."""
        async with self.pool.acquire() as conn, conn.transaction():
            passed_over: list[int] = []
            row = None
            for _ in range(MAX_PASSED_OVER + 1):
                row = await conn.fetchrow(
                    "SELECT id, source, body, received_at, attempts, order_key FROM webhook_inbox"
                    " WHERE processed_at IS NULL AND next_attempt_at <= now() AND id <> ALL($1::bigint[])"
                    " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    passed_over,
                )
                if row is None or row["order_key"] is None:
                    break
                older_pending = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM webhook_inbox WHERE order_key = $1"
                    " AND processed_at IS NULL AND id < $2)",
                    row["order_key"],
                    row["id"],
                )
                if not older_pending:
                    break
                passed_over.append(row["id"])
                row = None
            if row is None:
                yield None
                return
            inbox = InboxRow(row["id"], row["source"], row["body"], row["received_at"], row["attempts"])
            yield inbox, IntakeTx(conn)
            await conn.execute("UPDATE webhook_inbox SET processed_at = now() WHERE id = $1", inbox.id)

    async def record_delivery_failure(self, inbox_id: int, error: str, *, give_up: bool) -> None:
        await self.pool.execute(
            "UPDATE webhook_inbox SET attempts = attempts + 1, last_error = $2,"
            " processed_at = CASE WHEN $3 THEN now() ELSE NULL END,"
            " next_attempt_at = now() + make_interval(secs => LEAST(60, 2 ^ attempts)) WHERE id = $1",
            inbox_id,
            error[:2000],
            give_up,
        )

    async def pending_deliveries(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL")
        return count

    async def oldest_pending_age(self, now: datetime) -> float:
        oldest: datetime | None = await self.pool.fetchval(
            "SELECT min(received_at) FROM webhook_inbox WHERE processed_at IS NULL"
        )
        return (now - oldest).total_seconds() if oldest else 0.0
