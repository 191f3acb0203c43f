from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.slack import SlackSandbox


@pytest.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    sandbox = SlackSandbox(incident_channel="incident")
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
