"""Alertmanager webhook payload (version 4) and its pure parser.

A delivery is a snapshot of one alert group: Alertmanager re-sends the same group on every
group_interval, after repeat_interval, after failed flushes and from every HA peer, so the
receiver treats it as state, never as an event (protocols.md A.3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.incident import Alert, AlertStatus
from bot.sources import json_body

GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class PayloadError(ValueError):
    """The webhook body is not a valid Alertmanager v4 payload; the message says why."""


class AMAlert(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if "alertname" not in labels:
            raise ValueError("alert labels must include alertname")
        return labels

    def to_domain(self) -> Alert:
        ends = self.ends_at
        # Firing alerts carry Go's zero time; treat it as "no end".
        if ends is not None and (ends.year <= 1 or ends == GO_ZERO_TIME):
            ends = None
        return Alert(
            fingerprint=self.fingerprint,
            status=AlertStatus(self.status),
            starts_at=self.starts_at,
            ends_at=ends,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            generator_url=self.generator_url,
        )


class AMPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1, max_length=4096)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[AMAlert] = Field(min_length=1, max_length=10_000)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")

    def domain_alerts(self) -> list[Alert]:
        return [a.to_domain() for a in self.alerts]


@dataclass(frozen=True, slots=True)
class Received:
    """A delivery as it is stored: the validated payload, the body to store, and how many
    characters PostgreSQL could not store were replaced (kept in the stored body as
    REPAIRS_FIELD, so the incident's timeline can say so)."""

    payload: AMPayload
    body: bytes
    repairs: int


# A field of our own in a stored body that had to be repaired (Alertmanager never sends it).
REPAIRS_FIELD = "incidentbotRepairedCharacters"


def receive(raw: bytes) -> Received:
    """Parse, repair what PostgreSQL cannot store, validate. PayloadError for the rest."""
    try:
        data, repairs = json_body.loads_repaired(raw)
    except json_body.JsonBodyError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    payload = _validated(data)
    if repairs:
        data[REPAIRS_FIELD] = repairs
        raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Received(payload, raw, repairs)


def parse_payload(raw: bytes) -> AMPayload:
    """Parse and validate a webhook body; PayloadError carries a reason fit for a 400.

    Anything unparsable (not UTF-8, e.g. UTF-16; nested too deep; not storable) is a
    PayloadError too: a 5xx would make Alertmanager retry a body that can never succeed."""
    try:
        data = json_body.loads(raw)
    except json_body.JsonBodyError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    return _validated(data)


def _validated(data: Any) -> AMPayload:
    if not isinstance(data, dict):
        raise PayloadError("payload must be a JSON object")
    try:
        return AMPayload.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PayloadError(f"invalid payload at {where}: {first['msg']}{more}") from None
