"""A heartbeat for work claimed in Postgres with a short lease (timer fires, playbook posts).

The claim lapses a short time after its holder dies, so another replica takes the work over
within seconds; while the holder lives, the heartbeat renews it, so work that takes longer
than the lease (a slow Slack, a slow Prometheus) is not taken over and done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

from bot.obs import logs

log = logs.logger(logs.Component.TASKS)

# Renewed three times per lease: one late or failed renewal does not lose it.
RENEWALS_PER_LEASE = 3
STOP_WAIT_S = 1.0


@asynccontextmanager
async def heartbeat(renew: Callable[[], Awaitable[bool]], lease_s: float, what: str) -> AsyncIterator[None]:
    """Renew a claim every lease_s / 3 while the block runs. `renew` answers False when the
    claim is no longer ours (then there is nothing left to keep)."""
    stop = asyncio.Event()
    keeper = asyncio.create_task(_keep(renew, lease_s / RENEWALS_PER_LEASE, stop, what), name=f"lease-{what}")
    try:
        yield
    finally:
        # The event ends the keeper even if a cancellation is swallowed inside a driver.
        stop.set()
        keeper.cancel()
        await asyncio.wait({keeper}, timeout=STOP_WAIT_S)


async def _keep(renew: Callable[[], Awaitable[bool]], every_s: float, stop: asyncio.Event, what: str) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
            return
        try:
            kept = await renew()
        except (asyncpg.PostgresError, OSError) as exc:
            # Postgres away: the claim may lapse and the work be repeated, which its keys make
            # harmless; the outage itself is reported by whoever needs Postgres next.
            log.debug("lease.renew_failed", extra={"what": what, "error": str(exc)})
            continue
        if not kept:
            log.warning("lease.lost", extra={"what": what})
            return
