"""The account's state (users, escalation policies, services, incidents), its setup helpers,
incident transitions and change notification."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import trustme
from aiohttp import web

from sandbox.pagerduty.models import (
    DEFAULT_API_TOKEN,
    DEFAULT_PRIORITIES,
    DEFAULT_USERS,
    DEFAULT_WEBHOOK_SECRET,
    HOST,
    RecordedRequest,
    SandboxEscalationPolicy,
    SandboxIncident,
    SandboxPriority,
    SandboxService,
    SandboxUser,
    SentWebhook,
    not_found,
    utc_now,
)

T = TypeVar("T")


class PagerDutyState:
    """The account and the server's bookkeeping; ``PagerDutySandbox`` serves it."""

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
        self.priorities: dict[str, SandboxPriority] = {}
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
        for priority_id, name in DEFAULT_PRIORITIES:
            self.priorities[priority_id] = SandboxPriority(priority_id, name, len(self.priorities) + 1)
        ids = [u[0] for u in users]
        if len(ids) >= 2:
            self.add_escalation_policy("PE00001", "Platform", [[ids[0]], [ids[1]]])
            self.add_escalation_policy("PE00002", "Payments", [[ids[-1]], [ids[0]]])
            self.add_service("PS00001", "checkout-api", "PE00001")
            self.add_service("PS00002", "payments", "PE00002")

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``: the REST and Events API base URL."""
        if self._port is None:
            raise RuntimeError("PagerDutySandbox is not started")
        return f"https://{HOST}:{self._port}"

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

    def priority_named(self, name: str) -> SandboxPriority:
        found = next((p for p in self.priorities.values() if p.name == name), None)
        if found is None:
            raise KeyError(f"unknown priority {name}")
        return found

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
        now = utc_now()
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

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every state change); return it."""
        async with asyncio.timeout(timeout), self._cond:
            return await self._cond.wait_for(predicate)

    # -- state changes ---------------------------------------------------------------------------

    def _incident(self, incident_id: str) -> SandboxIncident:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise not_found(f"Incident {incident_id}")
        return incident

    def _transition(self, incident: SandboxIncident, status: str, user: SandboxUser | None) -> list[str]:
        """Move an incident to ``status``; return the webhook event types it causes."""
        old = incident.status
        if status == old:
            return []
        now = utc_now()
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
