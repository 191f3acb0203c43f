"""A fake PagerDuty: REST API v2 and Events API v2 over TLS, and V3 webhooks out to the bot.

It speaks the calls the bot makes (protocols B.2, B.3) strictly enough for the real
``pagerduty`` SDK to be tested against it:

- every REST call needs ``Authorization: Token token=<key>`` (401 otherwise) and
  ``Accept: application/vnd.pagerduty+json;version=2`` (406 otherwise);
- ``PUT /incidents/{id}``, ``PUT /incidents`` and ``POST /incidents/{id}/notes`` need a
  ``From`` header holding a known user's email and a JSON body (400 otherwise);
- unknown incidents are 404; errors use PagerDuty's ``{"error": {message, code, errors}}``.

Routes: ``GET/PUT /incidents``, ``GET/PUT /incidents/{id}``, ``GET/POST
/incidents/{id}/notes``, ``GET /oncalls``, ``GET /users[/{id}]``, ``GET /services/{id}``,
``GET /escalation_policies/{id}``, ``POST /v2/enqueue`` (Events API, routing key = a
service's ``integration_key``; point ``EventsApiV2Client`` at :attr:`base_url`).

The server uses TLS with a throwaway trustme CA (the SDK only accepts ``https://``); give
:attr:`PagerDutySandbox.ca_path` to the client as its CA file.

Webhooks: :meth:`PagerDutySandbox.send_webhook` posts a signed V3 webhook to any URL (as a
change made in PagerDuty's UI would). When the bot changes an incident through the API,
the sandbox sends the matching webhook to :attr:`webhook_url` too, in order, as real
PagerDuty does, so tests can prove the bot does not loop on its own changes. Turn that off
with ``emit_webhooks=False``.

Seed data: users alice/bob/carol ``@example.com`` (the Slack sandbox's default users),
escalation policies ``PE00001`` (alice, then bob) and ``PE00002`` (carol, then alice),
services ``PS00001`` checkout-api and ``PS00002`` payments. No incidents.

Tests wait with :meth:`wait_for`, which wakes on every state change (no polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import ssl
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import trustme
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = [
    "ACCEPT_V2",
    "DEFAULT_API_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "PagerDutySandbox",
    "RecordedRequest",
    "SandboxEscalationPolicy",
    "SandboxIncident",
    "SandboxNote",
    "SandboxService",
    "SandboxUser",
    "SentWebhook",
]

HOST = "127.0.0.1"
ACCEPT_V2 = "application/vnd.pagerduty+json;version=2"
DEFAULT_API_TOKEN = "sandbox-pagerduty-token"
DEFAULT_WEBHOOK_SECRET = "sandbox-pagerduty-webhook-secret"
WEB_URL = "https://sandbox.pagerduty.com"
WEBHOOK_TIMEOUT = 5.0  # PagerDuty waits 5 s for a 2xx
RATE_LIMIT = 960
STATUSES = ("triggered", "acknowledged", "resolved")
SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_USERS = (
    ("PU00001", "Alice", "alice@example.com"),
    ("PU00002", "Bob", "bob@example.com"),
    ("PU00003", "Carol", "carol@example.com"),
)

T = TypeVar("T")


# -- state -------------------------------------------------------------------------------


@dataclass
class SandboxUser:
    id: str
    name: str
    email: str


@dataclass
class SandboxEscalationPolicy:
    id: str
    name: str
    levels: list[list[str]]  # user ids per escalation level (level 1 first)


@dataclass
class SandboxService:
    id: str
    name: str
    escalation_policy_id: str
    integration_key: str


@dataclass
class SandboxNote:
    id: str
    content: str
    user_id: str | None
    created_at: datetime


@dataclass
class SandboxIncident:
    id: str
    number: int
    title: str
    status: str
    urgency: str
    service_id: str
    escalation_policy_id: str
    incident_key: str
    created_at: datetime
    updated_at: datetime
    assignee_ids: list[str] = field(default_factory=list)
    acknowledger_ids: list[str] = field(default_factory=list)
    notes: list[SandboxNote] = field(default_factory=list)
    resolution: str | None = None
    reopened_at: datetime | None = None
    last_changed_by: str | None = None  # user id


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class SentWebhook:
    url: str
    webhook_id: str
    event_type: str
    incident_id: str | None
    body: bytes
    headers: Mapping[str, str]
    status: int | None  # None when the POST failed; see ``error``
    error: str | None = None
    emitted: bool = False  # True when sent because of an API change (not send_webhook)

    def payload(self) -> Any:
        return json.loads(self.body)


class _ApiError(Exception):
    def __init__(
        self, status: int, message: str, code: int, errors: Sequence[str] = (), *, events: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.errors = list(errors)
        self.events = events

    def response(self) -> web.Response:
        if self.events:  # Events API v2 error shape
            body: dict[str, Any] = {"status": "invalid event", "message": self.message, "errors": self.errors}
        else:
            error: dict[str, Any] = {"message": self.message, "code": self.code}
            if self.errors:
                error["errors"] = self.errors
            body = {"error": error}
        return web.json_response(body, status=self.status)


def _invalid(*errors: str) -> _ApiError:
    return _ApiError(400, "Invalid Input Provided", 2001, errors)


def _not_found(what: str) -> _ApiError:
    return _ApiError(404, "Not Found", 2100, [f"{what} not found"])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


def sign_body(secrets: Sequence[str], body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value: one ``v1=<hmac>`` per secret, comma separated."""
    return ",".join("v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() for secret in secrets)


# -- the sandbox -------------------------------------------------------------------------


class PagerDutySandbox:
    """Fake PagerDuty on ``https://127.0.0.1:<port>``. Use as ``async with PagerDutySandbox():``."""

    def __init__(
        self,
        *,
        api_token: str = DEFAULT_API_TOKEN,
        webhook_secrets: Sequence[str] = (DEFAULT_WEBHOOK_SECRET,),
        webhook_url: str | None = None,
        emit_webhooks: bool = True,
        users: Sequence[tuple[str, str, str]] = DEFAULT_USERS,
    ) -> None:
        self.api_tokens: set[str] = {api_token}
        self.webhook_secrets: list[str] = list(webhook_secrets)
        self.webhook_url = webhook_url
        self.emit_webhooks = emit_webhooks

        self.users: dict[str, SandboxUser] = {}
        self.escalation_policies: dict[str, SandboxEscalationPolicy] = {}
        self.services: dict[str, SandboxService] = {}
        self.incidents: dict[str, SandboxIncident] = {}
        self.requests: list[RecordedRequest] = []
        self.webhooks: list[SentWebhook] = []
        self.events: list[dict[str, Any]] = []  # Events API v2 bodies accepted

        self._numbers = 0
        self._note_numbers = 0
        self._failures: list[tuple[int, str | None]] = []
        self._pending_notifies: set[asyncio.Task[None]] = set()
        self._cond = asyncio.Condition()
        self._outbox: asyncio.Queue[tuple[str, str, str | None, bytes]] = asyncio.Queue()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca = trustme.CA()
        self._port: int | None = None
        self._ca_path: str | None = None

        for user_id, name, email in users:
            self.add_user(user_id, name, email)
        ids = [u[0] for u in users]
        if len(ids) >= 2:
            self.add_escalation_policy("PE00001", "Platform", [[ids[0]], [ids[1]]])
            self.add_escalation_policy("PE00002", "Payments", [[ids[-1]], [ids[0]]])
            self.add_service("PS00001", "checkout-api", "PE00001")
            self.add_service("PS00002", "payments", "PE00002")

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="pagerduty-sandbox-")
        ca_file = Path(self._tmpdir.name) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(ca_file))
        self._ca_path = str(ca_file)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(HOST, "localhost").configure_cert(server_ctx)

        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.get("/incidents", self._list_incidents),
                web.put("/incidents", self._bulk_update),
                web.get("/incidents/{id}", self._get_incident),
                web.put("/incidents/{id}", self._update_incident),
                web.get("/incidents/{id}/notes", self._list_notes),
                web.post("/incidents/{id}/notes", self._create_note),
                web.get("/oncalls", self._oncalls),
                web.get("/users", self._list_users),
                web.get("/users/{id}", self._get_user),
                web.get("/services/{id}", self._get_service),
                web.get("/escalation_policies/{id}", self._get_policy),
                web.post("/v2/enqueue", self._enqueue),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0, ssl_context=server_ctx)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        self._worker = asyncio.create_task(self._deliver_emitted(), name="pagerduty-sandbox-webhooks")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``: the REST and Events API base URL."""
        if self._port is None:
            raise RuntimeError("PagerDutySandbox is not started")
        return f"https://{HOST}:{self._port}"

    @property
    def ca_path(self) -> str:
        """PEM file of the CA that signed the server certificate (the client's ``verify``)."""
        if self._ca_path is None:
            raise RuntimeError("PagerDutySandbox is not started")
        return self._ca_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this sandbox (for aiohttp or other clients)."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    # -- seeding and inspection ------------------------------------------------------------

    def add_user(self, user_id: str, name: str, email: str) -> SandboxUser:
        user = SandboxUser(user_id, name, email)
        self.users[user_id] = user
        return user

    def add_escalation_policy(
        self, policy_id: str, name: str, levels: Sequence[Sequence[str]]
    ) -> SandboxEscalationPolicy:
        for level in levels:
            for user_id in level:
                if user_id not in self.users:
                    raise KeyError(f"unknown user {user_id}")
        policy = SandboxEscalationPolicy(policy_id, name, [list(level) for level in levels])
        self.escalation_policies[policy_id] = policy
        return policy

    def add_service(self, service_id: str, name: str, escalation_policy_id: str) -> SandboxService:
        if escalation_policy_id not in self.escalation_policies:
            raise KeyError(f"unknown escalation policy {escalation_policy_id}")
        key = hashlib.sha256(f"integration:{service_id}".encode()).hexdigest()[:32]
        service = SandboxService(service_id, name, escalation_policy_id, key)
        self.services[service_id] = service
        return service

    def user_by_email(self, email: str) -> SandboxUser | None:
        wanted = email.strip().lower()
        return next((u for u in self.users.values() if u.email.lower() == wanted), None)

    def create_incident(
        self,
        title: str,
        service: str = "PS00001",
        urgency: str = "high",
        escalation_policy: str | None = None,
        *,
        incident_key: str | None = None,
    ) -> SandboxIncident:
        """Add a triggered incident (no webhook; send one with :meth:`send_webhook`).

        ``service`` is a service id or name; the escalation policy defaults to the service's.
        It is assigned to the policy's level-1 users.
        """
        svc = self.services.get(service) or next(
            (s for s in self.services.values() if s.name == service), None
        )
        if svc is None:
            raise KeyError(f"unknown service {service}")
        if urgency not in ("high", "low"):
            raise ValueError("urgency must be high or low")
        policy_id = escalation_policy or svc.escalation_policy_id
        policy = self.escalation_policies.get(policy_id)
        if policy is None:
            raise KeyError(f"unknown escalation policy {policy_id}")
        self._numbers += 1
        now = _now()
        incident = SandboxIncident(
            id=f"PI{self._numbers:05d}",
            number=self._numbers,
            title=title,
            status="triggered",
            urgency=urgency,
            service_id=svc.id,
            escalation_policy_id=policy.id,
            incident_key=incident_key or uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            assignee_ids=list(policy.levels[0]) if policy.levels else [],
        )
        self.incidents[incident.id] = incident
        self._notify_soon()
        return incident

    def fail_next(self, status: int, count: int = 1, *, path: str | None = None) -> None:
        """Answer the next ``count`` REST requests (optionally only those to ``path``) with
        ``status`` (e.g. 429 or 500) in PagerDuty's error shape."""
        self._failures.extend([(status, path)] * count)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every state change); return it."""
        async with asyncio.timeout(timeout), self._cond:
            return await self._cond.wait_for(predicate)

    # -- webhooks ------------------------------------------------------------------------------

    async def send_webhook(
        self,
        url: str,
        event_type: str,
        incident_id: str,
        agent: str | None = None,
        *,
        webhook_id: str | None = None,
        secrets: Sequence[str] | None = None,
        occurred_at: datetime | None = None,
    ) -> int:
        """POST a signed V3 webhook about an incident to ``url``; return the HTTP status.

        Simulates a change made in PagerDuty itself: for lifecycle events that imply a status
        (triggered, acknowledged, unacknowledged, resolved, reopened) the stored incident
        takes that status first, so a later ``GET /incidents/{id}`` agrees with the webhook.
        ``agent`` is a user id or email (None: automation). ``incident.annotated`` needs a
        note on the incident. ``webhook_id`` lets a test redeliver the same webhook;
        ``secrets`` overrides the signing secrets (``[]``: no signature header).
        ``occurred_at`` sends an event PagerDuty recorded earlier and delivers only now
        (webhooks are not delivered in order): the stored incident is left as it is.
        """
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise KeyError(f"unknown incident {incident_id}")
        user = self._agent(agent)
        if occurred_at is None:
            self._apply_implied_status(incident, event_type, user)
        body = self._webhook_body(event_type, incident, user, occurred_at=occurred_at)
        sent = await self._post_webhook(
            url, event_type, incident.id, body, webhook_id=webhook_id, secrets=secrets, emitted=False
        )
        if sent.status is None:
            raise ConnectionError(f"webhook to {url} failed: {sent.error}")
        return sent.status

    async def send_event(
        self,
        url: str,
        event: Mapping[str, Any],
        *,
        webhook_id: str | None = None,
        secrets: Sequence[str] | None = None,
    ) -> int:
        """POST ``{"event": event}`` (any shape, e.g. an unknown type) signed; return the status."""
        body = json.dumps({"event": dict(event)}).encode()
        event_type = str(event.get("event_type", ""))
        sent = await self._post_webhook(
            url, event_type, None, body, webhook_id=webhook_id, secrets=secrets, emitted=False
        )
        if sent.status is None:
            raise ConnectionError(f"webhook to {url} failed: {sent.error}")
        return sent.status

    async def resend(self, sent: SentWebhook) -> int:
        """Redeliver a webhook byte for byte, same ``X-Webhook-Id`` (as PagerDuty's retries)."""
        again = await self._post(sent.url, sent.event_type, sent.incident_id, sent.body, dict(sent.headers))
        if again.status is None:
            raise ConnectionError(f"webhook to {sent.url} failed: {again.error}")
        return again.status

    def _agent(self, agent: str | None) -> SandboxUser | None:
        if agent is None:
            return None
        user = self.users.get(agent) or self.user_by_email(agent)
        if user is None:
            raise KeyError(f"unknown user {agent}")
        return user

    def _apply_implied_status(
        self, incident: SandboxIncident, event_type: str, user: SandboxUser | None
    ) -> None:
        implied = {
            "incident.triggered": "triggered",
            "incident.acknowledged": "acknowledged",
            "incident.unacknowledged": "triggered",
            "incident.resolved": "resolved",
            "incident.reopened": "triggered",
        }.get(event_type)
        if implied is not None and implied != incident.status:
            self._transition(incident, implied, user)

    def _emit(
        self, event_type: str, incident: SandboxIncident, user: SandboxUser | None, **extra: Any
    ) -> None:
        """Queue the webhook real PagerDuty would send for a change made through the API."""
        if not self.emit_webhooks or self.webhook_url is None:
            return
        body = self._webhook_body(event_type, incident, user, **extra)
        self._outbox.put_nowait((self.webhook_url, event_type, incident.id, body))

    async def _deliver_emitted(self) -> None:
        # One worker: webhooks arrive in order, as PagerDuty keeps order per subscription.
        while True:
            url, event_type, incident_id, body = await self._outbox.get()
            await self._post_webhook(url, event_type, incident_id, body, emitted=True)

    async def _post_webhook(
        self,
        url: str,
        event_type: str,
        incident_id: str | None,
        body: bytes,
        *,
        webhook_id: str | None = None,
        secrets: Sequence[str] | None = None,
        emitted: bool,
    ) -> SentWebhook:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PagerDuty-Webhook/V3.0",
            "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Webhook-Subscription": "PSUB001",
        }
        use = self.webhook_secrets if secrets is None else list(secrets)
        if use:
            headers["X-PagerDuty-Signature"] = sign_body(use, body)
        return await self._post(url, event_type, incident_id, body, headers, emitted=emitted)

    async def _post(
        self,
        url: str,
        event_type: str,
        incident_id: str | None,
        body: bytes,
        headers: dict[str, str],
        *,
        emitted: bool = False,
    ) -> SentWebhook:
        if self._session is None:
            raise RuntimeError("PagerDutySandbox is not started")
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        sent = SentWebhook(
            url=url,
            webhook_id=headers["X-Webhook-Id"],
            event_type=event_type,
            incident_id=incident_id,
            body=body,
            headers=headers,
            status=status,
            error=error,
            emitted=emitted,
        )
        self.webhooks.append(sent)
        await self._notify()
        return sent

    def _webhook_body(
        self, event_type: str, incident: SandboxIncident, user: SandboxUser | None, **extra: Any
    ) -> bytes:
        data: dict[str, Any]
        if event_type == "incident.annotated":
            note: SandboxNote | None = extra.get("note") or (incident.notes[-1] if incident.notes else None)
            if note is None:
                raise ValueError(f"incident {incident.id} has no note for incident.annotated")
            data = {
                "incident": self._incident_ref(incident),
                "id": note.id,
                "content": note.content,
                "trimmed": False,
                "type": "incident_note",
            }
        else:
            data = self._webhook_incident(incident)
        event = {
            "id": str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": (extra.get("occurred_at") or _now())
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "agent": self._user_ref(user) if user is not None else None,
            "client": {"name": "PagerDuty"} if user is None else None,
            "data": data,
        }
        return json.dumps({"event": event}, separators=(",", ":")).encode()

    # -- representations ------------------------------------------------------------------------

    def _user_ref(self, user: SandboxUser) -> dict[str, Any]:
        return {
            "id": user.id,
            "type": "user_reference",
            "summary": user.name,
            "self": f"{self._api_url()}/users/{user.id}",
            "html_url": f"{WEB_URL}/users/{user.id}",
        }

    def _user(self, user: SandboxUser) -> dict[str, Any]:
        return {
            **self._user_ref(user),
            "type": "user",
            "name": user.name,
            "email": user.email,
            "time_zone": "Etc/UTC",
            "role": "user",
        }

    def _service_ref(self, service: SandboxService) -> dict[str, Any]:
        return {
            "id": service.id,
            "type": "service_reference",
            "summary": service.name,
            "self": f"{self._api_url()}/services/{service.id}",
            "html_url": f"{WEB_URL}/service-directory/{service.id}",
        }

    def _policy_ref(self, policy: SandboxEscalationPolicy) -> dict[str, Any]:
        return {
            "id": policy.id,
            "type": "escalation_policy_reference",
            "summary": policy.name,
            "self": f"{self._api_url()}/escalation_policies/{policy.id}",
            "html_url": f"{WEB_URL}/escalation_policies/{policy.id}",
        }

    def _incident_ref(self, incident: SandboxIncident) -> dict[str, Any]:
        return {
            "id": incident.id,
            "type": "incident_reference",
            "summary": f"[#{incident.number}] {incident.title}",
            "self": f"{self._api_url()}/incidents/{incident.id}",
            "html_url": f"{WEB_URL}/incidents/{incident.id}",
        }

    def _rest_incident(self, incident: SandboxIncident) -> dict[str, Any]:
        service = self.services[incident.service_id]
        policy = self.escalation_policies[incident.escalation_policy_id]
        at = _iso(incident.updated_at)
        return {
            **self._incident_ref(incident),
            "type": "incident",
            "incident_number": incident.number,
            "title": incident.title,
            "description": incident.title,
            "created_at": _iso(incident.created_at),
            "updated_at": at,
            "status": incident.status,
            "incident_key": incident.incident_key,
            "service": self._service_ref(service),
            "assignments": [
                {"at": at, "assignee": self._user_ref(self.users[uid])} for uid in incident.assignee_ids
            ],
            "acknowledgements": [
                {"at": at, "acknowledger": self._user_ref(self.users[uid])}
                for uid in incident.acknowledger_ids
            ],
            "assigned_via": "escalation_policy",
            "last_status_change_at": at,
            "last_status_change_by": (
                self._user_ref(self.users[incident.last_changed_by])
                if incident.last_changed_by
                else self._service_ref(service)
            ),
            "escalation_policy": self._policy_ref(policy),
            "teams": [],
            "priority": None,
            "urgency": incident.urgency,
            "resolve_reason": None,
            "alert_counts": {
                "all": 1,
                "triggered": 0 if incident.status == "resolved" else 1,
                "resolved": 1 if incident.status == "resolved" else 0,
            },
            "incident_type": {"name": "incident_default"},
        }

    def _webhook_incident(self, incident: SandboxIncident) -> dict[str, Any]:
        service = self.services[incident.service_id]
        policy = self.escalation_policies[incident.escalation_policy_id]
        return {
            **self._incident_ref(incident),
            "type": "incident",
            "number": incident.number,
            "status": incident.status,
            "incident_key": incident.incident_key,
            "created_at": _iso(incident.created_at),
            "reopened_at": _iso(incident.reopened_at) if incident.reopened_at else None,
            "title": incident.title,
            "incident_type": {"name": "incident_default"},
            "service": self._service_ref(service),
            "assignees": [self._user_ref(self.users[uid]) for uid in incident.assignee_ids],
            "escalation_policy": self._policy_ref(policy),
            "teams": [],
            "priority": None,
            "urgency": incident.urgency,
            "conference_bridge": None,
            "resolve_reason": None,
        }

    def _rest_note(self, note: SandboxNote) -> dict[str, Any]:
        user = self.users.get(note.user_id) if note.user_id else None
        return {
            "id": note.id,
            "user": self._user_ref(user) if user else None,
            "channel": {"summary": "The PagerDuty REST API"},
            "content": note.content,
            "created_at": _iso(note.created_at),
        }

    def _api_url(self) -> str:
        return self.base_url if self._port is not None else "https://api.pagerduty.com"

    # -- state changes ---------------------------------------------------------------------------

    def _incident(self, incident_id: str) -> SandboxIncident:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise _not_found(f"Incident {incident_id}")
        return incident

    def _transition(self, incident: SandboxIncident, status: str, user: SandboxUser | None) -> list[str]:
        """Move an incident to ``status``; return the webhook event types it causes."""
        old = incident.status
        if status == old:
            return []
        now = _now()
        events: list[str] = []
        if old == "resolved":
            incident.reopened_at = now
            incident.resolution = None
            events.append("incident.reopened")
            policy = self.escalation_policies[incident.escalation_policy_id]
            incident.assignee_ids = list(policy.levels[0]) if policy.levels else []
        if status == "acknowledged":
            incident.acknowledger_ids = [user.id] if user else []
            events.append("incident.acknowledged")
        elif status == "resolved":
            incident.assignee_ids = []
            incident.acknowledger_ids = []
            events.append("incident.resolved")
        elif status == "triggered":
            incident.acknowledger_ids = []
            if old == "acknowledged":
                events.append("incident.unacknowledged")
        incident.status = status
        incident.updated_at = now
        incident.last_changed_by = user.id if user else None
        return events

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def _notify_soon(self) -> None:
        # Called from sync helpers; wake waiters once the caller yields.
        with contextlib.suppress(RuntimeError):  # no running loop: nobody can be waiting
            task = asyncio.get_running_loop().create_task(self._notify())
            self._pending_notifies.add(task)
            task.add_done_callback(self._pending_notifies.discard)

    # -- HTTP plumbing ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        is_events = request.path.startswith("/v2/")
        try:
            if not is_events:
                self._check_rest_headers(request)
            self._injected_failure(request)
            response = await handler(request)
        except _ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            # Unknown route or method: PagerDuty's shape rather than aiohttp's text page.
            response = _ApiError(exc.status, exc.reason, 2100 if exc.status == 404 else 2001).response()
        if not is_events:
            response.headers["ratelimit-limit"] = str(RATE_LIMIT)
            response.headers["ratelimit-remaining"] = str(RATE_LIMIT - 1)
            response.headers["ratelimit-reset"] = "60"
        response.headers["x-request-id"] = uuid.uuid4().hex
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=MultiDictProxy(MultiDict(request.query)),
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=body,
                status=response.status,
            )
        )
        await self._notify()
        return response

    def _check_rest_headers(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        prefix = "Token token="
        if not auth.startswith(prefix) or auth[len(prefix) :] not in self.api_tokens:
            raise _ApiError(401, "Unauthorized", 2006, ["Invalid or missing API token"])
        accept = request.headers.get("Accept", "").replace(" ", "")
        if ACCEPT_V2 not in accept.split(","):
            raise _ApiError(406, "Not Acceptable", 2001, [f"Accept header must be {ACCEPT_V2}"])

    def _injected_failure(self, request: web.Request) -> None:
        for i, (status, path) in enumerate(self._failures):
            if path is None or path == request.path:
                del self._failures[i]
                if status == 429:
                    raise _ApiError(429, "Rate Limit Exceeded", 2020, ["Too many requests"])
                raise _ApiError(status, "Internal Server Error" if status >= 500 else "Error", 3001)

    def _requester(self, request: web.Request) -> SandboxUser:
        email = request.headers.get("From")
        if not email:
            raise _invalid("The From header is required and must be a valid user's email address")
        user = self.user_by_email(email)
        if user is None:
            raise _invalid(f"Requester User Not Found: no user with email {email}")
        return user

    @staticmethod
    async def _json_object(request: web.Request, *, events: bool = False) -> dict[str, Any]:
        if request.content_type != "application/json":
            if events:
                raise _ApiError(400, "Event object is invalid", 0, ["Content-Type must be JSON"], events=True)
            raise _invalid("Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            if events:
                raise _ApiError(400, "Event object is invalid", 0, ["Invalid JSON"], events=True) from None
            raise _invalid("Request body is not valid JSON") from None
        if not isinstance(body, dict):
            if events:
                raise _ApiError(400, "Event object is invalid", 0, ["Body is not an object"], events=True)
            raise _invalid("Request body must be a JSON object")
        return body

    @staticmethod
    def _page(request: web.Request, items: list[dict[str, Any]], key: str) -> web.Response:
        try:
            limit = int(request.query.get("limit", "25"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            raise _invalid("limit and offset must be integers") from None
        if limit < 1 or offset < 0:
            raise _invalid("limit must be positive and offset non-negative")
        limit = min(limit, 100)
        page = items[offset : offset + limit]
        total = len(items) if request.query.get("total") == "true" else None
        return web.json_response(
            {key: page, "limit": limit, "offset": offset, "more": offset + limit < len(items), "total": total}
        )

    # -- REST handlers -----------------------------------------------------------------------------

    async def _list_incidents(self, request: web.Request) -> web.Response:
        statuses = request.query.getall("statuses[]", [])
        items = [
            self._rest_incident(i) for i in self.incidents.values() if not statuses or i.status in statuses
        ]
        return self._page(request, items, "incidents")

    async def _get_incident(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        return web.json_response({"incident": self._rest_incident(incident)})

    def _apply_update(self, incident: SandboxIncident, update: Mapping[str, Any], user: SandboxUser) -> None:
        if update.get("type") not in ("incident", "incident_reference"):
            raise _invalid("incident.type must be incident or incident_reference")
        status = update.get("status")
        if status is not None and status not in STATUSES:
            raise _invalid("Status must be one of triggered, acknowledged, or resolved.")
        resolution = update.get("resolution")
        if resolution is not None and (not isinstance(resolution, str) or status != "resolved"):
            raise _invalid("resolution must be a string and requires status resolved")
        title = update.get("title")
        if title is not None and (not isinstance(title, str) or not title):
            raise _invalid("title must be a non-empty string")
        urgency = update.get("urgency")
        if urgency is not None and urgency not in ("high", "low"):
            raise _invalid("urgency must be high or low")
        events = self._transition(incident, status, user) if status else []
        if resolution is not None and "incident.resolved" in events:
            incident.resolution = resolution
        if title is not None:
            incident.title = title
        if urgency is not None:
            incident.urgency = urgency
        for event_type in events:
            self._emit(event_type, incident, user)

    async def _update_incident(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        user = self._requester(request)
        body = await self._json_object(request)
        update = body.get("incident")
        if not isinstance(update, dict):
            raise _invalid("Body must contain an 'incident' object")
        self._apply_update(incident, update, user)
        return web.json_response({"incident": self._rest_incident(incident)})

    async def _bulk_update(self, request: web.Request) -> web.Response:
        user = self._requester(request)
        body = await self._json_object(request)
        updates = body.get("incidents")
        if not isinstance(updates, list) or not updates:
            raise _invalid("Body must contain a non-empty 'incidents' list")
        targets = []
        for update in updates:
            if not isinstance(update, dict) or not isinstance(update.get("id"), str):
                raise _invalid("Each incident needs an id")
            targets.append((self._incident(update["id"]), update))
        for incident, update in targets:
            self._apply_update(incident, update, user)
        return web.json_response({"incidents": [self._rest_incident(i) for i, _ in targets]})

    async def _list_notes(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        return web.json_response({"notes": [self._rest_note(n) for n in incident.notes]})

    async def _create_note(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        user = self._requester(request)
        body = await self._json_object(request)
        note_body = body.get("note")
        if not isinstance(note_body, dict):
            raise _invalid("Body must contain a 'note' object")
        content = note_body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise _invalid("Note content must be a non-empty string")
        if len(content) > 25000:
            raise _invalid("Note content is longer than 25000 characters")
        self._note_numbers += 1
        note = SandboxNote(f"PN{self._note_numbers:05d}", content, user.id, _now())
        incident.notes.append(note)
        self._emit("incident.annotated", incident, user, note=note)
        return web.json_response({"note": self._rest_note(note)}, status=201)

    async def _oncalls(self, request: web.Request) -> web.Response:
        policy_ids = request.query.getall("escalation_policy_ids[]", [])
        user_ids = request.query.getall("user_ids[]", [])
        include = request.query.getall("include[]", [])
        for policy_id in policy_ids:
            if policy_id not in self.escalation_policies:
                raise _invalid(f"Escalation policy {policy_id} not found")
        earliest = request.query.get("earliest") == "true"
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, int, str]] = set()
        for policy in self.escalation_policies.values():
            if policy_ids and policy.id not in policy_ids:
                continue
            for level_index, level in enumerate(policy.levels, start=1):
                for user_id in level:
                    if user_ids and user_id not in user_ids:
                        continue
                    if earliest and (policy.id, level_index, user_id) in seen:
                        continue
                    seen.add((policy.id, level_index, user_id))
                    user = self.users[user_id]
                    items.append(
                        {
                            "escalation_policy": self._policy_ref(policy),
                            "escalation_level": level_index,
                            "schedule": None,
                            "user": self._user(user) if "users" in include else self._user_ref(user),
                            "start": None,
                            "end": None,
                        }
                    )
        return self._page(request, items, "oncalls")

    async def _list_users(self, request: web.Request) -> web.Response:
        return self._page(request, [self._user(u) for u in self.users.values()], "users")

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["id"])
        if user is None:
            raise _not_found(f"User {request.match_info['id']}")
        return web.json_response({"user": self._user(user)})

    async def _get_service(self, request: web.Request) -> web.Response:
        service = self.services.get(request.match_info["id"])
        if service is None:
            raise _not_found(f"Service {request.match_info['id']}")
        policy = self.escalation_policies[service.escalation_policy_id]
        return web.json_response(
            {
                "service": {
                    **self._service_ref(service),
                    "type": "service",
                    "name": service.name,
                    "status": "active",
                    "escalation_policy": self._policy_ref(policy),
                }
            }
        )

    async def _get_policy(self, request: web.Request) -> web.Response:
        policy = self.escalation_policies.get(request.match_info["id"])
        if policy is None:
            raise _not_found(f"Escalation policy {request.match_info['id']}")
        rules = [
            {
                "escalation_delay_in_minutes": 30,
                "targets": [self._user_ref(self.users[uid]) for uid in level],
            }
            for level in policy.levels
        ]
        return web.json_response(
            {
                "escalation_policy": {
                    **self._policy_ref(policy),
                    "type": "escalation_policy",
                    "name": policy.name,
                    "escalation_rules": rules,
                }
            }
        )

    # -- Events API v2 ---------------------------------------------------------------------------

    async def _enqueue(self, request: web.Request) -> web.Response:
        body = await self._json_object(request, events=True)

        def invalid(*errors: str) -> _ApiError:
            return _ApiError(400, "Event object is invalid", 0, errors, events=True)

        routing_key = body.get("routing_key")
        service = next((s for s in self.services.values() if s.integration_key == routing_key), None)
        if not isinstance(routing_key, str) or len(routing_key) != 32 or service is None:
            raise invalid("'routing_key' is invalid")
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            raise invalid("'event_action' must be one of trigger, acknowledge or resolve")
        dedup_key = body.get("dedup_key")
        if dedup_key is not None and (not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= 255):
            raise invalid("'dedup_key' must be a string of 1 to 255 characters")
        open_incident = next(
            (
                i
                for i in self.incidents.values()
                if i.service_id == service.id and i.incident_key == dedup_key and i.status != "resolved"
            ),
            None,
        )
        if action == "trigger":
            payload = body.get("payload")
            if not isinstance(payload, dict):
                raise invalid("'payload' is missing or not an object")
            errors = []
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                errors.append("'payload.summary' must be a string of 1 to 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("'payload.source' is missing")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' must be one of critical, error, warning or info")
            timestamp = payload.get("timestamp")
            if timestamp is not None:
                try:
                    datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
                except ValueError:
                    errors.append("'payload.timestamp' is not an ISO 8601 timestamp")
            if errors:
                raise invalid(*errors)
            dedup_key = dedup_key or uuid.uuid4().hex
            if open_incident is None:
                incident = self.create_incident(str(summary), service.id, incident_key=dedup_key)
                self._emit("incident.triggered", incident, None)
        elif dedup_key is None:
            raise invalid("'dedup_key' is required for acknowledge and resolve")
        elif open_incident is not None:
            target = "acknowledged" if action == "acknowledge" else "resolved"
            for event_type in self._transition(open_incident, target, None):
                self._emit(event_type, open_incident, None)
        self.events.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status=202
        )
