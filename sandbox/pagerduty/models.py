"""PagerDuty's objects as the sandbox stores them, what it records, and its error shape."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy

HOST = "127.0.0.1"
ACCEPT_V2 = "application/vnd.pagerduty+json;version=2"
DEFAULT_API_TOKEN = "sandbox-pagerduty-token"
DEFAULT_WEBHOOK_SECRET = "sandbox-pagerduty-webhook-secret"
WEB_URL = "https://sandbox.pagerduty.com"
WEBHOOK_TIMEOUT = 5.0  # PagerDuty waits 5 s for a 2xx
RATE_LIMIT = 960
STATUSES = ("triggered", "acknowledged", "resolved")
SEVERITIES = ("critical", "error", "warning", "info")
# The priorities a PagerDuty account starts with (P1 highest).
DEFAULT_PRIORITIES = tuple((f"PPRIO0{n}", f"P{n}") for n in range(1, 6))
DEFAULT_USERS = (
    ("PU00001", "Alice", "alice@example.com"),
    ("PU00002", "Bob", "bob@example.com"),
    ("PU00003", "Carol", "carol@example.com"),
)


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
class SandboxPriority:
    id: str
    name: str
    order: int  # PagerDuty lists priorities highest first


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
    priority_id: str | None = None


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


class ApiError(Exception):
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


def invalid(*errors: str) -> ApiError:
    return ApiError(400, "Invalid Input Provided", 2001, errors)


def not_found(what: str) -> ApiError:
    return ApiError(404, "Not Found", 2100, [f"{what} not found"])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)
