"""AlertmanagerSilences against a real Alertmanager 0.25."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from bot.clients.alertmanager import AlertmanagerSilences, Matcher
from bot.core.errors import IntegrationError
from sandbox.services import AlertmanagerServer, free_port

WAIT = 30.0
T = TypeVar("T")


async def wait_until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT) -> T:
    """Poll `probe` until it returns something other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AlertmanagerServer]:
    async def webhook(_request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/alertmanager", webhook)
    async with serve(app) as hostport:
        server = await asyncio.to_thread(
            AlertmanagerServer.start,
            tmp_path_factory.mktemp("alertmanager"),
            f"http://{hostport}/webhooks/alertmanager",
            "test-token",
        )
        try:
            yield server
        finally:
            await asyncio.to_thread(server.stop)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def silences(alertmanager: AlertmanagerServer, session: aiohttp.ClientSession) -> AlertmanagerSilences:
    return AlertmanagerSilences(alertmanager.url, session, timeout=5)


def alert_state(alerts: list[dict[str, Any]], service: str) -> dict[str, Any] | None:
    for alert in alerts:
        if alert["labels"].get("service") == service:
            status: dict[str, Any] = alert["status"]
            return status
    return None


async def test_silence_suppresses_matching_alert_until_expired(
    alertmanager: AlertmanagerServer, silences: AlertmanagerSilences
) -> None:
    name = f"Test{uuid.uuid4().hex[:8]}"
    labels = {"alertname": name, "namespace": "prod", "severity": "critical"}
    await asyncio.to_thread(
        alertmanager.post_alerts,
        [{"labels": {**labels, "service": "api"}}, {"labels": {**labels, "service": "db"}}],
    )
    now = datetime.now(UTC)
    matchers = [Matcher("alertname", name), Matcher("service", "api|web", is_regex=True)]
    silence_id = await silences.create_silence(
        matchers, now, now + timedelta(hours=1), created_by="incidentbot-test", comment="INC-1 mitigation"
    )
    assert uuid.UUID(silence_id)

    silence = await silences.get_silence(silence_id)
    assert silence is not None
    assert silence.id == silence_id
    assert silence.active and silence.state == "active"
    assert silence.matchers == tuple(matchers)
    assert (silence.created_by, silence.comment) == ("incidentbot-test", "INC-1 mitigation")
    assert abs((silence.ends_at - now) - timedelta(hours=1)) < timedelta(seconds=5)

    by_name = [Matcher("alertname", name)]

    async def api_suppressed() -> list[dict[str, Any]] | None:
        alerts = await silences.alerts(by_name)
        api = alert_state(alerts, "api")
        return alerts if api is not None and api["state"] == "suppressed" else None

    alerts = await wait_until(api_suppressed, "the api alert to be suppressed")
    api = alert_state(alerts, "api")
    assert api is not None and api["silencedBy"] == [silence_id]
    db = alert_state(alerts, "db")
    assert db is not None and db["state"] == "active" and db["silencedBy"] == []

    # Filters: only silenced ones, or only active ones, or with a negative matcher.
    silenced_only = await silences.alerts(by_name, active=False)
    assert [a["labels"]["service"] for a in silenced_only] == ["api"]
    not_api = await silences.alerts([*by_name, Matcher("service", "api", is_equal=False)])
    assert [a["labels"]["service"] for a in not_api] == ["db"]

    await silences.expire_silence(silence_id)
    expired = await silences.get_silence(silence_id)
    assert expired is not None and expired.state == "expired" and not expired.active

    async def api_active() -> bool | None:
        api = alert_state(await silences.alerts(by_name), "api")
        return True if api is not None and api["state"] == "active" else None

    await wait_until(api_active, "the api alert to be active again")
    await silences.expire_silence(silence_id)  # expiring twice is fine


async def test_filter_values_are_escaped(
    alertmanager: AlertmanagerServer, silences: AlertmanagerSilences
) -> None:
    name = f"Test{uuid.uuid4().hex[:8]}"
    tricky = 'say "hi" \\ bye'
    await asyncio.to_thread(alertmanager.post_alerts, [{"labels": {"alertname": name, "service": tricky}}])
    found = await silences.alerts([Matcher("alertname", name), Matcher("service", tricky)])
    assert [a["labels"]["service"] for a in found] == [tricky]
    assert await silences.alerts([Matcher("alertname", name), Matcher("service", "say")]) == []


async def test_unknown_silence(silences: AlertmanagerSilences) -> None:
    unknown = str(uuid.uuid4())
    assert await silences.get_silence(unknown) is None
    with pytest.raises(IntegrationError) as caught:
        await silences.expire_silence(unknown)
    assert caught.value.system == "alertmanager"
    assert caught.value.status == 500
    assert caught.value.message == "silence not found"


async def test_rejected_silence(silences: AlertmanagerSilences) -> None:
    now = datetime.now(UTC)
    with pytest.raises(IntegrationError) as caught:
        await silences.create_silence([Matcher("alertname", "X")], now, now - timedelta(minutes=1), "t", "c")
    assert caught.value.status == 400
    assert "start time must be before end time" in caught.value.message

    with pytest.raises(IntegrationError) as bad_id:
        await silences.get_silence("not-a-uuid")
    assert bad_id.value.status == 422
    assert "must be of type uuid" in bad_id.value.message


def test_matcher_validation() -> None:
    with pytest.raises(ValueError, match="invalid label name"):
        Matcher('x"} or {', "v")
    assert Matcher("a", "b", is_regex=True, is_equal=False).to_filter() == 'a!~"b"'


async def test_alertmanager_down(session: aiohttp.ClientSession) -> None:
    silences = AlertmanagerSilences(f"http://127.0.0.1:{free_port()}", session, timeout=5)
    began = time.monotonic()
    with pytest.raises(IntegrationError) as caught:
        await silences.alerts()
    assert time.monotonic() - began < 2.0
    assert caught.value.system == "alertmanager"
    assert caught.value.status is None
