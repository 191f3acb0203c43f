"""Webhook intake goes first: background work waits its turn while requests are in flight."""

from __future__ import annotations

import asyncio
import contextvars
import time

from bot.flows.gate import BACKGROUND, IntakeGate


async def _spin(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_turn_is_immediate_without_requests() -> None:
    gate = IntakeGate(max_wait_s=60)
    async with asyncio.timeout(1):
        await gate.turn()


async def test_background_waits_for_the_requests_and_a_quiet_moment() -> None:
    gate = IntakeGate(max_wait_s=60, quiet_s=0.02)
    with gate.request():
        waiting = asyncio.create_task(gate.turn())
        await _spin()
        assert not waiting.done()
    ended = time.monotonic()
    await _spin()
    assert not waiting.done()  # not straight after the last request: the next may be unread
    async with asyncio.timeout(5):
        await waiting
    assert time.monotonic() - ended >= 0.02


async def test_a_new_request_in_the_quiet_period_keeps_background_waiting() -> None:
    gate = IntakeGate(max_wait_s=60, quiet_s=0.05)
    with gate.request():
        pass
    waiting = asyncio.create_task(gate.turn())
    with gate.request():
        await asyncio.sleep(0.1)  # longer than the quiet period, inside a request
        assert not waiting.done()
    async with asyncio.timeout(5):
        await waiting


async def test_background_is_never_starved_and_passes_one_at_a_time() -> None:
    gate = IntakeGate(max_wait_s=0.05)
    with gate.request():  # a burst that never pauses
        started = time.monotonic()
        first = asyncio.create_task(gate.turn())
        second = asyncio.create_task(gate.turn())
        async with asyncio.timeout(5):
            await first
            first_at = time.monotonic() - started
            await second
            second_at = time.monotonic() - started
    assert first_at >= 0.05
    assert second_at >= first_at + 0.045


async def test_only_background_work_waits_in_shared_code() -> None:
    gate = IntakeGate(max_wait_s=60)
    with gate.request():
        async with asyncio.timeout(1):
            await gate.background_turn()  # e.g. a responder's command: no wait

        async def background() -> None:
            BACKGROUND.set(True)
            await gate.background_turn()

        task = asyncio.create_task(background(), context=contextvars.copy_context())
        await _spin()
        assert not task.done()
    async with asyncio.timeout(5):
        await task
    assert gate.in_flight == 0
