"""V3 webhooks out to the bot: signing, sending on request, and emitting them (in order) when
the bot changes an incident through the API."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp

from sandbox.pagerduty.models import SandboxIncident, SandboxNote, SandboxUser, SentWebhook, utc_now
from sandbox.pagerduty.representations import Representations


def sign_body(secrets: Sequence[str], body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value: one ``v1=<hmac>`` per secret, comma separated."""
    return ",".join("v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() for secret in secrets)


class Webhooks(Representations):
    """Signed V3 webhooks: sent on request (a change made in PagerDuty) or emitted, through one
    ordered worker, when the bot changes an incident through the API."""

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
            "occurred_at": (extra.get("occurred_at") or utc_now())
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "agent": self._user_ref(user) if user is not None else None,
            "client": {"name": "PagerDuty"} if user is None else None,
            "data": data,
        }
        return json.dumps({"event": event}, separators=(",", ":")).encode()
