"""PagerDuty V3 webhook payloads: models, signature check and parser. Pure: no I/O, no clock.

A V3 webhook POST carries exactly one event, ``{"event": {...}}`` (protocols B.1). Incident
lifecycle events carry the incident itself in ``event.data`` (``data.type == "incident"``),
``incident.annotated`` carries the note (``data.type == "incident_note"``), and every other
event type (responders, tasks, workflows, services, and types PagerDuty adds later) parses
into :class:`GenericData`, which keeps all its fields. An unknown event type is not an error.

Signatures (``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``) are HMAC-SHA256 over the raw
body, one entry per active secret; see :func:`verify_signature`. The header alone is checked
first (:func:`signature_header_ok`), so a request without a plausible signature is refused
before its body is read.

Only the body is signed: ``X-Webhook-Id`` is not, so deliveries are deduplicated on the signed
``event.id``, and an event older than PagerDuty's retry window is never applied
(:func:`too_old`). Names of PagerDuty users are external text, never Slack markup
(:func:`actor_label`), and links are kept only when they are plain https URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError

from bot.sources import json_body

__all__ = [
    "DEDUP_KEY_FIELD",
    "INCIDENT_EVENT_TYPES",
    "JOIN_DEDUP_KEY",
    "JOIN_GROUP_KEY",
    "JOIN_PAGERDUTY",
    "JOIN_SHA256",
    "MAX_EVENT_AGE",
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
    "actor_label",
    "alertmanager_join_keys",
    "parse_webhook",
    "person_label",
    "sign",
    "signature_header_ok",
    "too_old",
    "verify_signature",
]

SIGNATURE_HEADER = "X-PagerDuty-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-Id"
_SIGNATURE_PREFIX = "v1="
_SIGNATURE_ENTRY = re.compile(r"v1=[0-9a-fA-F]{64}")
# PagerDuty retries a delivery for up to 48 h; anything older is a replay, not a retry. The
# margin covers deliveries queued behind a failing one and clock skew.
MAX_EVENT_AGE = timedelta(hours=48 + 6)
# The characters Slack markup (mentions, links, link labels) is made of, and line breaks: none
# survives in an actor label. An `&` is left to escaping where the label is rendered.
_MARKUP = str.maketrans({"<": "‹", ">": "›", "|": "¦", "\n": " ", "\r": " ", "\t": " "})
MAX_ACTOR_LABEL = 80


def _safe_link(value: object) -> str | None:
    """Keep a link only when it is https and cannot break out of Slack's ``<url|label>``."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("https://")
        or any(c in value for c in "<|> \n\r\t")
    ):
        return None
    return value


SafeLink = Annotated[str | None, BeforeValidator(_safe_link)]


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
    html_url: SafeLink = None


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
    html_url: SafeLink = None
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

    # Signed, unlike X-Webhook-Id: deliveries are deduplicated on it.
    id: str = Field(min_length=1, max_length=200)
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

    Raises :class:`PagerDutyWebhookError` (a ValueError) when the body is not UTF-8 JSON we can
    store, lacks ``event``, or a known field has the wrong shape.
    """
    try:
        body = json_body.loads(raw)
    except json_body.JsonBodyError as exc:
        raise PagerDutyWebhookError(str(exc)) from None
    if not isinstance(body, dict):
        raise PagerDutyWebhookError(f"body is a JSON {type(body).__name__}, not an object")
    if "event" not in body:
        raise PagerDutyWebhookError("body has no 'event' object")
    try:
        return _Envelope.model_validate(body).event
    except ValidationError as exc:
        raise PagerDutyWebhookError(_describe(exc)) from None


def too_old(event: PagerDutyEvent, now: datetime) -> bool:
    """True when the event happened before PagerDuty's retry window (with margin) began."""
    return event.occurred_at < now - MAX_EVENT_AGE


def person_label(person: Reference) -> str:
    """A PagerDuty user's display name as plain single-line text no Slack markup can be made of
    (``<!channel>`` becomes ``‹!channel›``); still escaped wherever it is rendered."""
    name = (person.summary or person.id).translate(_MARKUP).strip() or person.id.translate(_MARKUP)
    return name if len(name) <= MAX_ACTOR_LABEL else name[: MAX_ACTOR_LABEL - 1] + "…"


def actor_label(event: PagerDutyEvent) -> str:
    """Who made the change in PagerDuty (:func:`person_label`), marked as coming from PagerDuty:
    the suffix also means a label never looks like a Slack user id."""
    return "PagerDuty" if event.agent is None else f"{person_label(event.agent)} (PagerDuty)"


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


def signature_header_ok(header: str | None) -> bool:
    """Whether ``X-PagerDuty-Signature`` holds at least one well-formed ``v1=<64 hex>`` entry:
    checked before the body is read, so an unsigned request costs no body read."""
    if not header:
        return False
    return any(_SIGNATURE_ENTRY.fullmatch(entry.strip()) for entry in header.split(","))


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


# How a PagerDuty incident's ``incident_key`` relates to an Alertmanager group (see
# :func:`alertmanager_join_keys`): the kinds stored beside each key.
JOIN_SHA256 = "alertmanager_sha256"
JOIN_GROUP_KEY = "alertmanager_group_key"
JOIN_DEDUP_KEY = "dedup_key"
JOIN_PAGERDUTY = "pagerduty_incident_key"
# An alert label or annotation naming the dedup key under which whatever pages PagerDuty for it
# (another integration, a script using the Events API) sends it.
DEDUP_KEY_FIELD = "pagerduty_dedup_key"


def alertmanager_join_keys(
    group_key: str, alerts: Iterable[tuple[Mapping[str, str], Mapping[str, str]]]
) -> dict[str, str]:
    """The PagerDuty incident keys that mean "this Alertmanager group", each with its kind.

    Alertmanager's ``pagerduty_configs`` sends the group as ``dedup_key`` = the hex SHA-256 of
    its group key (``notify.Key.Hash``; the Events API v1 ``incident_key`` is the same hash), and
    PagerDuty keeps it as the incident's ``incident_key``. A sender that keys on the raw group
    key, and the ``pagerduty_dedup_key`` label or annotation of the group's alerts (``alerts``
    as ``(labels, annotations)``), are recognised as well. Keys longer than the Events API
    allows (255) can never come back from PagerDuty and are left out.
    """
    keys: dict[str, str] = {}
    for labels, notes in alerts:
        for value in (labels.get(DEDUP_KEY_FIELD), notes.get(DEDUP_KEY_FIELD)):
            if value and value.strip() and len(value.strip()) <= 255:
                keys.setdefault(value.strip(), JOIN_DEDUP_KEY)
    if len(group_key) <= 255:
        keys[group_key] = JOIN_GROUP_KEY
    keys[hashlib.sha256(group_key.encode("utf-8")).hexdigest()] = JOIN_SHA256
    return keys
