"""Fault tests use the integration rig (sandbox Slack, an HTTP session) plus a fault proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.slack import SlackSandbox
from tests.faults.proxy import FaultProxy
from tests.integration.conftest import http, slack

__all__ = ["faulty_slack", "http", "slack"]


@pytest.fixture
async def faulty_slack(slack: SlackSandbox) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the sandbox Slack's Web API that injects faults on demand."""
    proxy = FaultProxy(slack.api_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
