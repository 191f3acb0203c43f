"""The real ``pagerduty`` SDK, through our adapter, against the TLS PagerDuty sandbox.

Also: webhooks the sandbox sends (by hand, and as the echo of the bot's own API changes)
are signed so that ``verify_signature`` accepts them and ``parse_webhook`` reads them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

import pytest
from aiohttp import web

from bot.clients.pagerduty import OnCallUser, PagerDutyClient, PagerDutyIncident
from bot.core.errors import ConfigError, IntegrationError
from bot.sources.pagerduty import EventType, IncidentStatus, parse_webhook, verify_signature
from sandbox.pagerduty import ACCEPT_V2, DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox

FROM = "alice@example.com"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A stand-in for the bot's /webhooks/pagerduty endpoint (plain HTTP)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    status: int = 202
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        async with self.cond:
            self.cond.notify_all()
        return web.Response(status=self.status)

    async def wait_for_count(self, n: int, timeout: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout), self.cond:
            await self.cond.wait_for(lambda: len(self.received) >= n)
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks/pagerduty", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/pagerduty"
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox() as sandbox:
        yield sandbox


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of `PagerDutyClient` (mypy checks them against its signature)."""

    base_url: str
    events_base_url: str
    verify: bool | str | ssl.SSLContext
    timeout: float
    max_rate_limit_retries: int
    network_attempts: int
    retry_backoff: float


def make_client(
    pd: PagerDutySandbox,
    *,
    api_key: str = DEFAULT_API_TOKEN,
    from_email: str = FROM,
    **kwargs: Unpack[ClientOptions],
) -> PagerDutyClient:
    options: ClientOptions = {
        "base_url": pd.base_url,
        "events_base_url": pd.base_url,
        "verify": pd.ca_path,
        "retry_backoff": 0.01,
    }
    options.update(kwargs)
    return PagerDutyClient(api_key, from_email, **options)


@pytest.fixture
async def client(pd: PagerDutySandbox) -> AsyncIterator[PagerDutyClient]:
    pd_client = make_client(pd)
    try:
        yield pd_client
    finally:
        await pd_client.aclose()


# -- REST calls -------------------------------------------------------------------------


async def test_acknowledge(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Checkout latency", service="checkout-api")

    change = await client.acknowledge(incident.id)

    assert change.incident_id == incident.id
    assert change.event_type is EventType.INCIDENT_ACKNOWLEDGED
    assert change.actor_email == FROM
    assert change.incident is not None
    assert change.incident.status is IncidentStatus.ACKNOWLEDGED
    assert change.incident.title == "Checkout latency"
    assert change.incident.service_id == "PS00001"
    assert change.incident.escalation_policy_id == "PE00001"
    assert pd.incidents[incident.id].status == "acknowledged"
    assert pd.incidents[incident.id].acknowledger_ids == ["PU00001"]

    [put] = pd.requests_to("PUT", f"/incidents/{incident.id}")
    assert put.status == 200
    assert put.headers["From"] == FROM
    assert put.headers["Accept"] == ACCEPT_V2
    assert put.headers["Authorization"] == f"Token token={DEFAULT_API_TOKEN}"
    assert put.json() == {"incident": {"type": "incident_reference", "status": "acknowledged"}}


async def test_create_incident_on_a_service_for_another_policy_once_per_key(
    pd: PagerDutySandbox, client: PagerDutyClient
) -> None:
    async def create(key: str = "incidentbot-7", policy: str = "PE00002") -> PagerDutyIncident:
        return await client.create_incident(
            service_id="PS00001",
            escalation_policy_id=policy,
            title="[P1] Checkout down — escalation level 3",
            urgency="high",
            incident_key=key,
            details="Not acknowledged in Slack.",
        )

    created = await create()
    assert (created.service_id, created.escalation_policy_id) == ("PS00001", "PE00002")
    assert created.incident_key == "incidentbot-7" and created.status is IncidentStatus.TRIGGERED
    [post] = pd.requests_to("POST", "/incidents")
    assert post.status == 201 and post.headers["From"] == FROM
    assert post.json()["incident"]["escalation_policy"] == {
        "id": "PE00002",
        "type": "escalation_policy_reference",
    }
    # PagerDuty refuses a second open incident with the key, and an unknown policy.
    with pytest.raises(IntegrationError, match="matching dedup key"):
        await create()
    with pytest.raises(IntegrationError, match="Escalation Policy Not Found"):
        await create(key="incidentbot-8", policy="PNOSUCH")
    assert len(pd.incidents) == 1


async def test_reassign_hands_an_open_incident_to_another_policy(
    pd: PagerDutySandbox, client: PagerDutyClient
) -> None:
    incident = pd.create_incident("Checkout latency", service="PS00001")
    moved = await client.reassign(incident.id, "PE00002")
    assert moved.escalation_policy_id == "PE00002"
    assert pd.incidents[incident.id].assignee_ids == pd.escalation_policies["PE00002"].levels[0]
    with pytest.raises(IntegrationError, match="Escalation Policy Not Found"):
        await client.reassign(incident.id, "PNOSUCH")
    await client.resolve(incident.id)
    with pytest.raises(IntegrationError, match="Already Resolved"):
        await client.reassign(incident.id, "PE00001")


async def test_resolve_with_resolution(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Payments down", service="PS00002")

    change = await client.resolve(incident.id, "Rolled back deploy 42")

    assert change.event_type is EventType.INCIDENT_RESOLVED
    assert change.incident is not None and change.incident.status is IncidentStatus.RESOLVED
    assert pd.incidents[incident.id].status == "resolved"
    assert pd.incidents[incident.id].resolution == "Rolled back deploy 42"
    [put] = pd.requests_to("PUT", f"/incidents/{incident.id}")
    assert put.json() == {
        "incident": {
            "type": "incident_reference",
            "status": "resolved",
            "resolution": "Rolled back deploy 42",
        }
    }


async def test_resolve_without_resolution(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Disk full")
    await client.resolve(incident.id)
    [put] = pd.requests_to("PUT", f"/incidents/{incident.id}")
    assert put.json() == {"incident": {"type": "incident_reference", "status": "resolved"}}
    assert pd.incidents[incident.id].resolution is None


async def test_add_note_sends_from(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Checkout latency")

    change = await client.add_note(incident.id, "Opened #inc-42 in Slack")

    assert change.event_type is EventType.INCIDENT_ANNOTATED
    assert change.incident_id == incident.id
    [note] = pd.incidents[incident.id].notes
    assert change.note_id == note.id
    assert note.content == "Opened #inc-42 in Slack"
    assert note.user_id == "PU00001"
    [post] = pd.requests_to("POST", f"/incidents/{incident.id}/notes")
    assert post.status == 201
    assert post.headers["From"] == FROM
    assert post.json() == {"note": {"content": "Opened #inc-42 in Slack"}}


async def test_writes_with_an_unknown_from_user_fail_with_400(pd: PagerDutySandbox) -> None:
    incident = pd.create_incident("Checkout latency")
    stranger = make_client(pd, from_email="mallory@example.com")
    try:
        with pytest.raises(IntegrationError) as caught:
            await stranger.add_note(incident.id, "hi")
        assert caught.value.status == 400
        assert "Requester User Not Found" in caught.value.message
        with pytest.raises(IntegrationError) as caught:
            await stranger.acknowledge(incident.id)
        assert caught.value.status == 400
    finally:
        await stranger.aclose()
    assert pd.incidents[incident.id].notes == []
    assert pd.incidents[incident.id].status == "triggered"


async def test_get_incident(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Checkout latency", urgency="low", incident_key="group-1")

    got = await client.get_incident(incident.id)

    assert got.id == incident.id
    assert got.number == incident.number
    assert got.title == "Checkout latency"
    assert got.status is IncidentStatus.TRIGGERED
    assert got.urgency == "low"
    assert got.incident_key == "group-1"
    assert got.service_name == "checkout-api"
    assert got.html_url is not None and got.html_url.endswith(f"/incidents/{incident.id}")


async def test_oncall_users_come_with_emails(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    users = await client.oncall_users("PE00001")

    assert users == [
        OnCallUser(id="PU00001", name="Alice", email="alice@example.com", escalation_level=1),
        OnCallUser(id="PU00002", name="Bob", email="bob@example.com", escalation_level=2),
    ]
    [get] = pd.requests_to("GET", "/oncalls")
    assert get.query.getall("escalation_policy_ids[]") == ["PE00001"]
    assert get.query.getall("include[]") == ["users"]
    assert get.query["earliest"] == "true"
    assert "From" in get.headers  # the SDK sends its default From on every call; harmless


async def test_oncall_users_other_policy(client: PagerDutyClient) -> None:
    users = await client.oncall_users("PE00002")
    assert [(u.email, u.escalation_level) for u in users] == [
        ("carol@example.com", 1),
        ("alice@example.com", 2),
    ]


async def test_user_email(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    assert await client.user_email("PU00002") == "bob@example.com"
    assert [r.path for r in pd.requests_to("GET", "/users/PU00002")] == ["/users/PU00002"]
    with pytest.raises(IntegrationError) as caught:
        await client.user_email("PNOBODY")
    assert caught.value.status == 404


async def test_bad_token_is_an_integration_error_401(pd: PagerDutySandbox) -> None:
    incident = pd.create_incident("Checkout latency")
    bad = make_client(pd, api_key="not-the-token")
    try:
        with pytest.raises(IntegrationError) as caught:
            await bad.acknowledge(incident.id)
    finally:
        await bad.aclose()
    assert caught.value.system == "pagerduty"
    assert caught.value.status == 401
    assert "not-the-token" not in str(caught.value)
    assert pd.incidents[incident.id].status == "triggered"


@pytest.mark.parametrize("call", ["acknowledge", "resolve", "add_note", "get_incident"])
async def test_unknown_incident_is_an_integration_error_404(client: PagerDutyClient, call: str) -> None:
    with pytest.raises(IntegrationError) as caught:
        if call == "acknowledge":
            await client.acknowledge("PNOPE00")
        elif call == "resolve":
            await client.resolve("PNOPE00", "x")
        elif call == "add_note":
            await client.add_note("PNOPE00", "x")
        else:
            await client.get_incident("PNOPE00")
    assert caught.value.system == "pagerduty"
    assert caught.value.status == 404
    assert "Not Found" in caught.value.message


async def test_incident_id_cannot_escape_the_path(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    with pytest.raises(IntegrationError) as caught:
        await client.get_incident("../users/PU00001")
    assert caught.value.status == 404
    assert not pd.requests_to("GET", "/users/PU00001")


async def test_rate_limit_is_retried_a_bounded_number_of_times(pd: PagerDutySandbox) -> None:
    incident = pd.create_incident("Checkout latency")
    limited = make_client(pd, max_rate_limit_retries=2)
    pd.fail_next(429, count=10)
    try:
        with pytest.raises(IntegrationError) as caught:
            await limited.acknowledge(incident.id)
    finally:
        await limited.aclose()
    assert caught.value.status == 429
    assert len(pd.requests_to("PUT", f"/incidents/{incident.id}")) == 3  # first try + 2 retries


async def test_rate_limit_then_success(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Checkout latency")
    pd.fail_next(429)
    change = await client.acknowledge(incident.id)
    assert change.incident is not None and change.incident.status is IncidentStatus.ACKNOWLEDGED
    assert [r.status for r in pd.requests_to("PUT", f"/incidents/{incident.id}")] == [429, 200]


async def test_server_error_is_an_integration_error(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    pd.fail_next(500)
    with pytest.raises(IntegrationError) as caught:
        await client.oncall_users("PE00001")
    assert caught.value.status == 500


async def test_connection_refused_is_an_integration_error_without_status() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = PagerDutyClient(
        DEFAULT_API_TOKEN, FROM, base_url=f"https://127.0.0.1:{port}", network_attempts=1, retry_backoff=0.01
    )
    try:
        with pytest.raises(IntegrationError) as caught:
            await nowhere.get_incident("P1")
    finally:
        await nowhere.aclose()
    assert caught.value.status is None
    assert "ConnectError" in caught.value.message


async def test_untrusted_certificate_is_an_integration_error(pd: PagerDutySandbox) -> None:
    untrusting = make_client(pd, verify=True, network_attempts=1)
    try:
        with pytest.raises(IntegrationError) as caught:
            await untrusting.get_incident("P1")
    finally:
        await untrusting.aclose()
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_plain_http_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="https"):
        PagerDutyClient(DEFAULT_API_TOKEN, FROM, base_url="http://127.0.0.1:1")


def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        PagerDutyClient(DEFAULT_API_TOKEN, FROM, verify=str(tmp_path / "nope.pem"))


async def test_closed_client_refuses_calls(pd: PagerDutySandbox) -> None:
    closing = make_client(pd)
    await closing.aclose()
    await closing.aclose()  # idempotent
    with pytest.raises(IntegrationError, match="closed"):
        await closing.get_incident("P1")


# -- Events API v2 ------------------------------------------------------------------------


async def test_trigger_opens_an_incident_with_an_explicit_timestamp(
    pd: PagerDutySandbox, client: PagerDutyClient
) -> None:
    routing_key = pd.services["PS00001"].integration_key

    key = await client.trigger(
        routing_key, "HighErrorRate on checkout", "alertmanager", "critical", "grp:abc"
    )
    again = await client.trigger(
        routing_key, "HighErrorRate on checkout", "alertmanager", "critical", "grp:abc"
    )

    assert key == again == "grp:abc"
    [incident] = pd.incidents.values()
    assert incident.incident_key == "grp:abc"
    assert incident.service_id == "PS00001"
    assert len(pd.events) == 2
    payload = pd.events[0]["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "alertmanager"
    assert payload["timestamp"].endswith("+00:00")


async def test_trigger_with_unknown_routing_key_is_an_integration_error(client: PagerDutyClient) -> None:
    with pytest.raises(IntegrationError) as caught:
        await client.trigger("0" * 32, "x", "y", "info", "k")
    assert caught.value.status == 400


# -- webhooks -------------------------------------------------------------------------------


async def test_the_echo_of_our_own_change_is_a_signed_webhook_we_can_recognise(
    pd: PagerDutySandbox, client: PagerDutyClient, receiver: Receiver
) -> None:
    pd.webhook_url = receiver.url
    incident = pd.create_incident("Checkout latency")

    change = await client.acknowledge(incident.id)
    [echo] = await receiver.wait_for_count(1)

    assert verify_signature([DEFAULT_WEBHOOK_SECRET], echo.body, echo.headers["X-PagerDuty-Signature"])
    event = parse_webhook(echo.body)
    assert (event.event_type, event.incident_id) == (change.event_type, change.incident_id)
    actor = pd.user_by_email(change.actor_email)
    assert actor is not None and event.agent is not None and event.agent.id == actor.id
    assert event.incident is not None and event.incident.status is IncidentStatus.ACKNOWLEDGED
    assert echo.headers["X-Webhook-Id"]
    await pd.wait_for(lambda: len(pd.webhooks) == 1)
    assert pd.webhooks[0].emitted and pd.webhooks[0].status == 202


async def test_echoes_arrive_in_order_and_notes_echo_as_annotated(
    pd: PagerDutySandbox, client: PagerDutyClient, receiver: Receiver
) -> None:
    pd.webhook_url = receiver.url
    incident = pd.create_incident("Checkout latency")

    await client.acknowledge(incident.id)
    note = await client.add_note(incident.id, "Rolling back")
    await client.acknowledge(incident.id)  # no change: no webhook
    await client.resolve(incident.id, "fixed")
    received = await receiver.wait_for_count(3)

    events = [parse_webhook(r.body) for r in received]
    assert [e.event_type for e in events] == [
        "incident.acknowledged",
        "incident.annotated",
        "incident.resolved",
    ]
    assert events[1].note is not None and events[1].note.id == note.note_id
    assert events[1].note.content == "Rolling back"


async def test_echo_can_be_switched_off(
    pd: PagerDutySandbox, client: PagerDutyClient, receiver: Receiver
) -> None:
    pd.webhook_url = receiver.url
    pd.emit_webhooks = False
    incident = pd.create_incident("Checkout latency")

    await client.acknowledge(incident.id)
    status = await pd.send_webhook(receiver.url, "incident.resolved", incident.id, agent="bob@example.com")

    assert status == 202
    [only] = await receiver.wait_for_count(1)
    assert parse_webhook(only.body).event_type == "incident.resolved"
    assert [w.emitted for w in pd.webhooks] == [False]


async def test_send_webhook_is_signed_and_realistic(pd: PagerDutySandbox, receiver: Receiver) -> None:
    incident = pd.create_incident("Checkout latency", service="payments")

    status = await pd.send_webhook(receiver.url, "incident.acknowledged", incident.id, agent="PU00002")

    assert status == 202
    [got] = receiver.received
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Webhook-Id"] == pd.webhooks[0].webhook_id
    assert got.headers["X-PagerDuty-Signature"].startswith("v1=")
    assert verify_signature([DEFAULT_WEBHOOK_SECRET], got.body, got.headers["X-PagerDuty-Signature"])
    assert not verify_signature(["another-secret"], got.body, got.headers["X-PagerDuty-Signature"])
    event = parse_webhook(got.body)
    assert event.agent is not None and (event.agent.id, event.agent.summary) == ("PU00002", "Bob")
    data = event.incident
    assert data is not None
    assert (data.id, data.number, data.title) == (incident.id, incident.number, "Checkout latency")
    assert data.status is IncidentStatus.ACKNOWLEDGED
    assert data.service is not None and data.service.summary == "payments"
    assert [a.id for a in data.assignees] == ["PU00003"]
    # PagerDuty's state agrees with the webhook it sent.
    assert pd.incidents[incident.id].status == "acknowledged"


async def test_send_webhook_with_rotated_secrets(pd: PagerDutySandbox, receiver: Receiver) -> None:
    pd.webhook_secrets = ["old-secret", "new-secret"]
    incident = pd.create_incident("Checkout latency")

    await pd.send_webhook(receiver.url, "incident.triggered", incident.id)

    [got] = receiver.received
    header = got.headers["X-PagerDuty-Signature"]
    assert header.count("v1=") == 2
    assert verify_signature(["new-secret"], got.body, header)
    assert verify_signature(["old-secret"], got.body, header)
    assert not verify_signature([DEFAULT_WEBHOOK_SECRET], got.body, header)
    event = parse_webhook(got.body)
    assert event.agent is None and event.client is not None and event.client.name == "PagerDuty"


async def test_redelivery_keeps_the_webhook_id(pd: PagerDutySandbox, receiver: Receiver) -> None:
    incident = pd.create_incident("Checkout latency")
    await pd.send_webhook(receiver.url, "incident.triggered", incident.id)
    assert await pd.resend(pd.webhooks[0]) == 202
    first, second = receiver.received
    assert first.body == second.body
    assert first.headers["X-Webhook-Id"] == second.headers["X-Webhook-Id"]


async def test_unsigned_and_unknown_events_can_be_sent(pd: PagerDutySandbox, receiver: Receiver) -> None:
    event = {
        "id": "01X",
        "event_type": "incident.widget.spun",
        "resource_type": "incident",
        "occurred_at": "2026-01-01T00:00:00Z",
        "agent": None,
        "client": None,
        "data": {"type": "widget", "id": "PW1"},
    }
    assert await pd.send_event(receiver.url, event, secrets=[]) == 202
    [got] = receiver.received
    assert "X-PagerDuty-Signature" not in got.headers
    assert parse_webhook(got.body).known_type is None


async def test_wait_for_times_out(pd: PagerDutySandbox) -> None:
    with pytest.raises(TimeoutError):
        await pd.wait_for(lambda: False, timeout=0.05)


async def test_wait_for_wakes_on_requests(pd: PagerDutySandbox, client: PagerDutyClient) -> None:
    incident = pd.create_incident("Checkout latency")
    waiter = asyncio.create_task(pd.wait_for(lambda: pd.incidents[incident.id].status == "acknowledged"))
    await client.acknowledge(incident.id)
    assert await waiter is True
