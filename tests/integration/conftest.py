from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from sandbox.slack import SlackSandbox
from sandbox.ssh import Sshd, running_sshd


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


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One real OpenSSH server for the session (tests/integration/sshd.py)."""
    try:
        cm = running_sshd(tmp_path_factory.mktemp("sshd"))
        server = cm.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)
