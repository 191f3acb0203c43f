"""Narrow interfaces the adapters are given instead of each other's concrete classes.

A client never imports the store (or another client): what it needs from elsewhere arrives as
one of these, built by the composition root (bot/app.py).
"""

from __future__ import annotations

from collections.abc import Callable
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
