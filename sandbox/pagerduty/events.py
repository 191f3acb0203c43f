"""The Events API v2 (``POST /v2/enqueue``): trigger, acknowledge and resolve by dedup key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from sandbox.pagerduty.models import SEVERITIES, SandboxService
from sandbox.pagerduty.webhooks import Webhooks
from sandbox.pagerduty.wire import invalid_event, read_json_object


class EventsApi(Webhooks):
    """``POST /v2/enqueue``: the routing key is a service's integration key; a trigger opens an
    incident unless one is open with the same dedup key; acknowledge and resolve move it."""

    async def _enqueue(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, events=True)
        service = self._routed_service(body.get("routing_key"))
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            raise invalid_event("'event_action' must be one of trigger, acknowledge or resolve")
        dedup_key = body.get("dedup_key")
        if dedup_key is not None and (not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= 255):
            raise invalid_event("'dedup_key' must be a string of 1 to 255 characters")
        open_incident = next(
            (
                i
                for i in self.incidents.values()
                if i.service_id == service.id and i.incident_key == dedup_key and i.status != "resolved"
            ),
            None,
        )
        if action == "trigger":
            summary = _trigger_summary(body.get("payload"))
            dedup_key = dedup_key or uuid.uuid4().hex
            if open_incident is None:
                incident = self.create_incident(summary, service.id, incident_key=dedup_key)
                self._emit("incident.triggered", incident, None)
        elif dedup_key is None:
            raise invalid_event("'dedup_key' is required for acknowledge and resolve")
        elif open_incident is not None:
            target = "acknowledged" if action == "acknowledge" else "resolved"
            for event_type in self._transition(open_incident, target, None):
                self._emit(event_type, open_incident, None)
        self.events.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status=202
        )

    def _routed_service(self, routing_key: Any) -> SandboxService:
        service = next((s for s in self.services.values() if s.integration_key == routing_key), None)
        if not isinstance(routing_key, str) or len(routing_key) != 32 or service is None:
            raise invalid_event("'routing_key' is invalid")
        return service


def _trigger_summary(payload: Any) -> str:
    """Check a trigger's ``payload`` (every problem listed at once); return its summary."""
    if not isinstance(payload, dict):
        raise invalid_event("'payload' is missing or not an object")
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
        raise invalid_event(*errors)
    return str(summary)
