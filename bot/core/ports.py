"""Narrow interfaces the adapters are given instead of each other's concrete classes.

A client never imports the store (or another client): what it needs from elsewhere arrives as
one of these, built by the composition root (bot/app.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer of a bounded token-bucket reservation: granted (use the token after
    `wait_s`), or refused (nothing was reserved; ask again after `wait_s`)."""

    granted: bool
    wait_s: float


class TokenBucket(Protocol):
    """Shared rate limiting across replicas (Redis in production)."""

    async def reserve_token(
        self, bucket: str, rate_per_s: float, burst: int, horizon_s: float
    ) -> Reservation:
        """Reserve one token usable within `horizon_s`, or reserve nothing and say when to ask
        again: a caller that dies leaves the bucket at most `horizon_s` in debt."""
        ...


@dataclass(frozen=True, slots=True)
class CommandOutput:
    """What a command on a host did: its exit status and its output, each capped (`truncated`
    says whether anything was cut)."""

    exit_status: int
    stdout: str
    stderr: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class HostTransport(Protocol):
    """How a host action reaches its host (SSH today; the Docker Engine API beside it). The
    argv comes from a policy template whose arguments were checked: a transport runs it as
    that argv and never hands anything user-influenced to a shell of its own making.

    Raises `IntegrationError` when the host cannot be reached or refuses us (a changed host
    key included, with nothing run), `TimeoutError` when `timeout_s` passes."""

    @property
    def where(self) -> str:
        """The host as shown to people, e.g. `ssh deploy@10.0.0.5:22`."""
        ...

    async def run(self, argv: Sequence[str], *, timeout_s: float) -> CommandOutput: ...
