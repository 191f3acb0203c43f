"""Which outside dependency an exception says is failing (None: a bug, worth a traceback)."""

from __future__ import annotations

import asyncpg
from redis.exceptions import RedisError

from bot.core.errors import IntegrationError


def dependency_of(exc: BaseException) -> str | None:
    if isinstance(exc, IntegrationError):
        return exc.system
    if isinstance(exc, RedisError):
        return "redis"
    if isinstance(
        exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | asyncpg.CannotConnectNowError
    ):
        return "postgres"
    if isinstance(exc, OSError | TimeoutError):
        # redis-py wraps its own errors (RedisError) and the outside systems' adapters theirs
        # (IntegrationError); a raw refused or dropped connection, or a command timeout, is
        # asyncpg's.
        return "postgres"
    return None
