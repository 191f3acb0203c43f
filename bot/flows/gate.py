"""Webhook intake goes first.

Acknowledging a webhook is the one latency that matters during an alert storm: Alertmanager
waits for it (and re-sends on a timeout), and nothing is safe until the delivery is committed.
Everything else the bot does with a delivery (forming incidents, publishing to Slack,
enrichment) is background work that may run milliseconds later without anyone noticing.

So background work asks the gate for a turn before each unit of work (a worker step, a publish
round, a background Slack call). With no webhook request in flight the turn is immediate.
While requests are in flight, background units pass one at a time, each as soon as intake is
idle or after at most ``max_wait_s``: a burst of webhooks is answered at nearly the speed of
the bare HTTP server, and background work still advances (about 1/max_wait_s units per
second) if the burst never pauses.

Intake counts as idle only after ``quiet_s`` without a webhook request in flight: when the loop
is saturated, the next requests of a burst are still unread in socket buffers while the
current ones finish, and a bare "no handler running" would let background work in exactly
then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

# Set in background tasks (publishing, intake workers): their Slack calls take a turn too,
# while a responder's command never waits behind a storm.
BACKGROUND: ContextVar[bool] = ContextVar("background", default=False)

MAX_WAIT_S = 0.05
QUIET_S = 0.01


class IntakeGate:
    def __init__(self, max_wait_s: float = MAX_WAIT_S, quiet_s: float = QUIET_S) -> None:
        self.max_wait_s = max_wait_s
        self.quiet_s = quiet_s
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._settling: asyncio.TimerHandle | None = None
        self._one_at_a_time = asyncio.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Mark a webhook request in progress for the duration of the block."""
        self._in_flight += 1
        self._idle.clear()
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._settling = asyncio.get_running_loop().call_later(self.quiet_s, self._settle)

    def _settle(self) -> None:
        self._settling = None
        if self._in_flight == 0:
            self._idle.set()

    async def turn(self) -> None:
        """Wait for this background unit's turn (see the module doc)."""
        if self._idle.is_set():
            return
        async with self._one_at_a_time:
            if self._idle.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_wait_s):
                    await self._idle.wait()

    async def background_turn(self) -> None:
        """A turn only when the caller runs as background work (for shared code paths)."""
        if BACKGROUND.get():
            await self.turn()
