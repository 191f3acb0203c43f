"""Quiet during outages: one log line when a dependency goes down, a reminder with a count
while it stays down, one line when it is back, and a gauge per dependency. Not a traceback
per failed attempt: while Redis or Slack is away every loop fails the same way, and the one
cause must stay readable in the logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.obs import logs
from bot.obs.metrics import Metrics

log = logs.logger(logs.Component.APP)

REMIND_EVERY_S = 30.0


@dataclass(slots=True)
class _Down:
    since: float
    failures: int
    reminded_at: float


class Outages:
    def __init__(
        self,
        metrics: Metrics,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        remind_every_s: float = REMIND_EVERY_S,
    ) -> None:
        self._metrics = metrics
        self._now = monotonic
        self._remind_every_s = remind_every_s
        self._down: dict[str, _Down] = {}

    def is_down(self, dependency: str) -> bool:
        return dependency in self._down

    def down(self, dependency: str, error: str) -> None:
        now = self._now()
        state = self._down.get(dependency)
        if state is None:
            self._down[dependency] = _Down(since=now, failures=1, reminded_at=now)
            self._metrics.dependency_up.labels(dependency).set(0)
            log.warning("dependency.down", extra={"dependency": dependency, "error": error[:300]})
            return
        state.failures += 1
        if now - state.reminded_at >= self._remind_every_s:
            state.reminded_at = now
            log.warning(
                "dependency.still_down",
                extra={
                    "dependency": dependency,
                    "for_s": round(now - state.since, 1),
                    "failures": state.failures,
                    "error": error[:300],
                },
            )

    def up(self, dependency: str) -> None:
        self._metrics.dependency_up.labels(dependency).set(1)
        state = self._down.pop(dependency, None)
        if state is not None:
            log.info(
                "dependency.up",
                extra={
                    "dependency": dependency,
                    "down_s": round(self._now() - state.since, 1),
                    "failures": state.failures,
                },
            )
