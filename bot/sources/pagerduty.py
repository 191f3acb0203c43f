"""PagerDuty V3 webhook payloads: models, signature check and parser. Pure: no I/O, no clock.

A V3 webhook POST carries exactly one event, ``{"event": {...}}`` (protocols B.1). Incident
lifecycle events carry the incident itself in ``event.data`` (``data.type == "incident"``),
``incident.annotated`` carries the note (``data.type == "incident_note"``), and every other
event type (responders, tasks, workflows, services, and types PagerDuty adds later) parses
into :class:`GenericData`, which keeps all its fields. An unknown event type is not an error.

Signatures (``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``) are HMAC-SHA256 over the raw
body, one entry per active secret; see :func:`verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

__all__ = [
    "INCIDENT_EVENT_TYPES",
    "SIGNATURE_HEADER",
    "WEBHOOK_ID_HEADER",
    "ClientInfo",
    "ConferenceBridge",
    "EventType",
    "GenericData",
    "IncidentData",
    "IncidentNoteData",
    "IncidentStatus",
    "IncidentType",
    "PagerDutyEvent",
    "PagerDutyWebhookError",
    "Reference",
    "Urgency",
    "parse_webhook",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-PagerDuty-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-Id"
_SIGNATURE_PREFIX = "v1="


class EventType(StrEnum):
    """Every V3 event type PagerDuty documents (protocols B.1)."""

    INCIDENT_TRIGGERED = "incident.triggered"
    INCIDENT_ACKNOWLEDGED = "incident.acknowledged"
    INCIDENT_UNACKNOWLEDGED = "incident.unacknowledged"
    INCIDENT_RESOLVED = "incident.resolved"
    INCIDENT_REOPENED = "incident.reopened"
    INCIDENT_REASSIGNED = "incident.reassigned"
    INCIDENT_ESCALATED = "incident.escalated"
    INCIDENT_DELEGATED = "incident.delegated"
    INCIDENT_PRIORITY_UPDATED = "incident.priority_updated"
    INCIDENT_SERVICE_UPDATED = "incident.service_updated"
    INCIDENT_TYPE_CHANGED = "incident.incident_type.changed"
    INCIDENT_ANNOTATED = "incident.annotated"
    INCIDENT_RESPONDER_ADDED = "incident.responder.added"
    INCIDENT_RESPONDER_REPLIED = "incident.responder.replied"
    INCIDENT_STATUS_UPDATE_PUBLISHED = "incident.status_update_published"
    INCIDENT_CONFERENCE_BRIDGE_UPDATED = "incident.conference_bridge.updated"
    INCIDENT_CUSTOM_FIELD_VALUES_UPDATED = "incident.custom_field_values.updated"
    INCIDENT_ROLE_ASSIGNED = "incident.role.assigned"
    INCIDENT_TASK_CREATED = "incident.task.created"
    INCIDENT_TASK_UPDATED = "incident.task.updated"
    INCIDENT_TASK_COMPLETED = "incident.task.completed"
    INCIDENT_ACTION_INVOCATION_CREATED = "incident.action_invocation.created"
    INCIDENT_ACTION_INVOCATION_UPDATED = "incident.action_invocation.updated"
    INCIDENT_ACTION_INVOCATION_TERMINATED = "incident.action_invocation.terminated"
    INCIDENT_WORKFLOW_STARTED = "incident.workflow.started"
    INCIDENT_WORKFLOW_COMPLETED = "incident.workflow.completed"
    SERVICE_CREATED = "service.created"
    SERVICE_UPDATED = "service.updated"
    SERVICE_DELETED = "service.deleted"
    SERVICE_CUSTOM_FIELD_VALUES_UPDATED = "service.custom_field_values.updated"


# The lifecycle events whose ``data`` is the incident itself (data.type "incident").
INCIDENT_EVENT_TYPES: frozenset[EventType] = frozenset(
    {
        EventType.INCIDENT_TRIGGERED,
        EventType.INCIDENT_ACKNOWLEDGED,
        EventType.INCIDENT_UNACKNOWLEDGED,
        EventType.INCIDENT_RESOLVED,
        EventType.INCIDENT_REOPENED,
        EventType.INCIDENT_REASSIGNED,
        EventType.INCIDENT_ESCALATED,
        EventType.INCIDENT_DELEGATED,
        EventType.INCIDENT_PRIORITY_UPDATED,
        EventType.INCIDENT_SERVICE_UPDATED,
        EventType.INCIDENT_TYPE_CHANGED,
    }
)


class IncidentStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Urgency(StrEnum):
    HIGH = "high"
    LOW = "low"


class _Model(BaseModel):
    # Tolerant reader: PagerDuty adds fields over time; unknown ones are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Reference(_Model):
    """A PagerDuty object reference: ``{id, type, summary, self, html_url}``."""

    id: str
    type: str | None = None
    summary: str | None = None
    self_url: str | None = Field(default=None, alias="self")
    html_url: str | None = None


class ClientInfo(_Model):
    name: str | None = None


class IncidentType(_Model):
    name: str


class ConferenceBridge(_Model):
    conference_number: str | None = None
    conference_url: str | None = None


class IncidentData(_Model):
    """``event.data`` of incident lifecycle events."""

    type: Literal["incident"]
    id: str
    status: IncidentStatus
    title: str
    number: int | None = None
    self_url: str | None = Field(default=None, alias="self")
    html_url: str | None = None
    incident_key: str | None = None
    created_at: datetime | None = None
    reopened_at: datetime | None = None
    incident_type: IncidentType | None = None
    service: Reference | None = None
    assignees: tuple[Reference, ...] = ()
    escalation_policy: Reference | None = None
    teams: tuple[Reference, ...] = ()
    priority: Reference | None = None
    urgency: Urgency | None = None
    conference_bridge: ConferenceBridge | None = None
    resolve_reason: Any = None


class IncidentNoteData(_Model):
    """``event.data`` of ``incident.annotated``."""

    type: Literal["incident_note"]
    id: str
    incident: Reference
    content: str
    trimmed: bool = False


class GenericData(_Model):
    """``event.data`` of every other event type; all fields are kept (``model_extra``)."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    type: str | None = None
    id: str | None = None
    incident: Reference | None = None


_DATA_TAGS = ("incident", "incident_note", "generic")


def _data_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("incident", "incident_note") else "generic"


EventData = Annotated[
    Annotated[IncidentData, Tag("incident")]
    | Annotated[IncidentNoteData, Tag("incident_note")]
    | Annotated[GenericData, Tag("generic")],
    Discriminator(_data_kind),
]


class PagerDutyEvent(_Model):
    """``event`` of a V3 webhook."""

    id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    resource_type: str = Field(min_length=1)
    occurred_at: datetime
    agent: Reference | None = None
    client: ClientInfo | None = None
    data: EventData

    @property
    def known_type(self) -> EventType | None:
        """The event type as an :class:`EventType`, or None when PagerDuty added a new one."""
        try:
            return EventType(self.event_type)
        except ValueError:
            return None

    @property
    def incident(self) -> IncidentData | None:
        """The incident, for lifecycle events (data.type ``incident``)."""
        return self.data if isinstance(self.data, IncidentData) else None

    @property
    def note(self) -> IncidentNoteData | None:
        """The note, for ``incident.annotated``."""
        return self.data if isinstance(self.data, IncidentNoteData) else None

    @property
    def incident_id(self) -> str | None:
        """The id of the incident this event is about, whatever the data type."""
        if isinstance(self.data, IncidentData):
            return self.data.id
        if self.data.incident is not None:
            return self.data.incident.id
        return None


class _Envelope(_Model):
    event: PagerDutyEvent


class PagerDutyWebhookError(ValueError):
    """The webhook body is not a V3 event; ``reason`` says why (safe to log and return)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid PagerDuty webhook: {reason}")
        self.reason = reason


def parse_webhook(raw: bytes) -> PagerDutyEvent:
    """Parse the raw body of a V3 webhook POST.

    Raises :class:`PagerDutyWebhookError` (a ValueError) when the body is not UTF-8 JSON,
    lacks ``event``, or a known field has the wrong shape.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PagerDutyWebhookError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PagerDutyWebhookError(f"body is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(body, dict):
        raise PagerDutyWebhookError(f"body is a JSON {type(body).__name__}, not an object")
    if "event" not in body:
        raise PagerDutyWebhookError("body has no 'event' object")
    try:
        return _Envelope.model_validate(body).event
    except ValidationError as exc:
        raise PagerDutyWebhookError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        loc = list(error["loc"])
        # Drop the discriminator tag pydantic inserts after "data" (event.data.incident.x).
        if loc[:2] == ["event", "data"] and len(loc) > 2 and loc[2] in _DATA_TAGS:
            del loc[2]
        problems.append(f"{'.'.join(str(part) for part in loc)}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def sign(secret: str, raw_body: bytes) -> str:
    """The hex HMAC-SHA256 of the body under one secret (what follows ``v1=``)."""
    return hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def verify_signature(secret_list: Sequence[str], raw_body: bytes, header: str | None) -> bool:
    """Check ``X-PagerDuty-Signature`` against every configured secret.

    The header holds one ``v1=<hex>`` entry per active signing secret, comma separated
    (several during secret rotation). Accept when any entry matches the HMAC of the raw,
    unaltered body under any of ``secret_list``. Comparison is constant-time. Empty secrets
    are ignored: an HMAC with an empty key is something anyone can compute.
    """
    if not header:
        return False
    expected = [sign(secret, raw_body).encode("ascii") for secret in secret_list if secret]
    if not expected:
        return False
    matched = False
    for raw_entry in header.split(","):
        entry = raw_entry.strip()
        if not entry.startswith(_SIGNATURE_PREFIX):
            continue
        candidate = entry[len(_SIGNATURE_PREFIX) :].strip().lower().encode("utf-8", "replace")
        for digest in expected:
            # No early exit: the work done does not depend on which entry matched.
            matched |= hmac.compare_digest(candidate, digest)
    return matched
