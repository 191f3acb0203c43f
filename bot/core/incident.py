"""Domain types and pure rules. No I/O and no clock: time is always passed in."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        return int(self.value[1])


class IncidentStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentSource(StrEnum):
    ALERTMANAGER = "alertmanager"
    HUMAN = "human"
    PAGERDUTY = "pagerduty"


@dataclass(frozen=True, slots=True)
class Alert:
    fingerprint: str
    status: AlertStatus
    starts_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "unnamed alert")


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime
    kind: str
    text: str
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    group_key: str
    title: str
    severity: Severity
    status: IncidentStatus
    source: IncidentSource
    created_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    commander: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    last_status_update: str | None = None
    status_updated_at: datetime | None = None
    resolution_summary: str | None = None
    pagerduty_incident_id: str | None = None
    pagerduty_url: str | None = None
    archived_at: datetime | None = None
    version: int = 1
    # The service catalog's team and service (bot.core.catalog); None: the default team.
    team: str | None = None
    service: str | None = None

    @property
    def ref(self) -> str:
        return f"#{self.id}"


class Role(StrEnum):
    COMMANDER = "commander"
    SCRIBE = "scribe"
    COMMS = "comms"
    DEPUTY = "deputy"


@dataclass(frozen=True, slots=True)
class IncidentView:
    """Everything a renderer needs about one incident, loaded from storage in one go."""

    incident: Incident
    alerts: tuple[Alert, ...]
    external_url: str | None = None
    grafana_url: str | None = None
    roles: tuple[tuple[Role, str], ...] = ()
    # The catalog's names for the incident's team and service, filled in by the publisher.
    team_title: str | None = None
    service_title: str | None = None

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is AlertStatus.FIRING)

    @property
    def all_resolved(self) -> bool:
        return bool(self.alerts) and not self.firing


# --- pure rules -----------------------------------------------------------------------

DEFAULT_SEVERITY_MAPPING: dict[str, Severity] = {
    "critical": Severity.P1,
    "page": Severity.P1,
    "error": Severity.P2,
    "high": Severity.P2,
    "warning": Severity.P2,
    "medium": Severity.P3,
    "low": Severity.P4,
    "info": Severity.P4,
    "none": Severity.P4,
}

_SEV_FORMS = re.compile(r"^(?:p|sev|sev-|s)?([0-4])$")


def map_severity(
    value: str | None, mapping: dict[str, Severity] | None = None, default: Severity = Severity.P3
) -> Severity:
    """Map an alert's `severity` label to P1–P4: named levels via the policy mapping,
    and P0–P4 / sev0–sev4 / 0–4 understood directly (P0 folds into P1, our highest)."""
    if not value:
        return default
    key = value.strip().lower()
    table = mapping if mapping is not None else DEFAULT_SEVERITY_MAPPING
    if key in table:
        return table[key]
    match = _SEV_FORMS.match(key)
    if match:
        return Severity(f"P{max(1, int(match.group(1)))}")
    return default


def highest_severity(severities: list[Severity]) -> Severity | None:
    return min(severities, key=lambda s: s.rank) if severities else None


def incident_title(alerts: list[Alert]) -> str:
    """Title from the first alert's summary annotation, else its alert name."""
    for alert in alerts:
        summary = alert.annotations.get("summary", "").strip()
        if summary:
            return summary[:200]
    return alerts[0].name if alerts else "Incident"


_SLUG_BAD = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_len: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = _SLUG_BAD.sub("-", ascii_text).strip("-")
    return slug[:max_len].rstrip("-") or "incident"


def channel_name(created_at: datetime, title: str, suffix: str = "", *, prefix: str = "inc") -> str:
    """`<prefix>-<yyyymmdd>-<slug>[-suffix]` (the team's prefix, default `inc`): always a valid
    Slack name of at most 80 characters."""
    prefix = f"{prefix}-{created_at:%Y%m%d}-"
    tail = f"-{suffix}" if suffix else ""
    return prefix + slugify(title, 80 - len(prefix) - len(tail)) + tail
