"""Supervised background tasks: never a bare create_task (house rule 6).

Every task is tracked, its failure is logged with a reference, and shutdown waits for the
tasks still running (bounded) so in-flight work finishes on SIGTERM.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from typing import Any

from bot.obs import logs

log = logs.logger(logs.Component.TASKS)


class Supervisor:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        if self.closing:
            coro.close()
            return None
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            ref = secrets.token_hex(4)
            log.error("task.failed", exc_info=exc, extra={"task": task.get_name(), "ref": ref})

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Stop accepting work and wait for running tasks; cancel what is left after timeout."""
        self.closing = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
