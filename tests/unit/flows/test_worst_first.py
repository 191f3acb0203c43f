"""Channel creation turns go to the worst severity first (bot.flows.publish.WorstFirst)."""

from __future__ import annotations

import asyncio

from bot.flows.publish import WorstFirst


async def test_waiting_turns_go_worst_first_then_first_come_and_a_cancelled_waiter_is_skipped() -> None:
    order = WorstFirst()
    taken: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with order.turn(4):
            taken.append("first")
            await release.wait()

    async def waiter(name: str, rank: int) -> None:
        async with order.turn(rank):
            taken.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)  # the holder has the turn
    tasks = [asyncio.create_task(waiter(n, r)) for n, r in (("p4", 4), ("p1-a", 1), ("p3", 3), ("p1-b", 1))]
    gone = asyncio.create_task(waiter("cancelled-p1", 1))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    await asyncio.gather(first, *tasks)
    assert taken == ["first", "p1-a", "p1-b", "p3", "p4"]
    async with order.turn(2):  # free again: no waiter is left behind
        taken.append("after")
    assert taken[-1] == "after"
