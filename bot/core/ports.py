"""Narrow interfaces the adapters are given instead of each other's concrete classes.

A client never imports the store (or another client): what it needs from elsewhere arrives as
one of these, built by the composition root (bot/app.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

Clock = Callable[[], datetime]


class TokenBucket(Protocol):
    """Shared rate limiting across replicas (Redis in production)."""

    async def take_token(self, bucket: str, rate_per_s: float, burst: int) -> float:
        """Take one token; returns how long to wait first (0 when one was free)."""
        ...
