"""Session-wide real services (PostgreSQL, Redis) started as plain processes on 127.0.0.1.

A missing binary FAILS the test (with the apt package to install); it never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sandbox.services import PostgresServer, RedisServer, ServiceError


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start(services_dir)
    except ServiceError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        pytest.fail(error, pytrace=False)
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[RedisServer]:
    try:
        server = RedisServer.start(services_dir)
    except ServiceError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        pytest.fail(error, pytrace=False)
    with server:
        yield server


@pytest.fixture
def database_dsn(postgres: PostgresServer) -> Iterator[str]:
    """DSN of a fresh, empty database for this test (dropped afterwards)."""
    if not postgres.running:  # a previous test may have killed it
        postgres.restart()
    name = f"test_{uuid.uuid4().hex[:16]}"
    dsn = postgres.create_database(name)
    yield dsn
    if postgres.running:
        postgres.drop_database(name)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of Redis DB 0, flushed (FLUSHDB) before the test."""
    if not redis_server.running:  # a previous test may have killed it
        redis_server.restart()
    url = redis_server.url
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url
