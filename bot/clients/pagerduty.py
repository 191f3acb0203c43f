"""PagerDuty adapter: the sync ``pagerduty`` SDK (httpx2) behind a small asyncio API.

Every SDK call runs in ``asyncio.to_thread``. Every SDK or transport failure becomes
``IntegrationError(system="pagerduty", ..., status=<HTTP status or None>)``.

The adapter does not deduplicate anything. Each write returns a :class:`PagerDutyChange`
naming the webhook PagerDuty will send back for it, so the caller can record "we caused
this" and drop the echo when it arrives.

Notes on the SDK (pagerduty 7.2.0, protocols B.4):

- base URLs must be ``https://``; tests point it at the TLS sandbox.
- ``verify=<path>`` is deprecated in httpx2 (it warns), so a CA path is turned into an
  ``ssl.SSLContext`` here.
- the SDK retries 429 without limit and sleeps in between; here 429 is retried a bounded
  number of times so a worker thread is never held forever.
- ``EventsApiV2Client.event_timestamp`` is broken; triggers always carry an explicit
  timestamp.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote

import httpx2
import pagerduty

from bot.core.errors import ConfigError, IntegrationError
from bot.obs import logs
from bot.sources.pagerduty import EventType, IncidentStatus

__all__ = [
    "OnCallUser",
    "PagerDutyChange",
    "PagerDutyClient",
    "PagerDutyIncident",
    "Priority",
    "Severity",
]

log = logs.logger(logs.Component.PAGERDUTY_API)

SYSTEM = "pagerduty"
DEFAULT_API_URL = "https://api.pagerduty.com"
DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255

Severity = Literal["critical", "error", "warning", "info"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OnCallUser:
    id: str
    name: str
    email: str | None
    escalation_level: int


@dataclass(frozen=True, slots=True)
class PagerDutyIncident:
    id: str
    number: int | None
    title: str
    status: IncidentStatus
    urgency: str | None
    incident_key: str | None
    html_url: str | None
    service_id: str | None
    service_name: str | None
    escalation_policy_id: str | None


@dataclass(frozen=True, slots=True)
class Priority:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class PagerDutyChange:
    """A change the bot made in PagerDuty.

    ``event_type`` is the V3 webhook PagerDuty sends back for it (its ``agent`` is the
    ``From`` user, ``actor_email``); the caller records it to recognise the echo.
    """

    incident_id: str
    event_type: EventType
    actor_email: str
    incident: PagerDutyIncident | None = None
    note_id: str | None = None


class PagerDutyClient:
    """REST API v2 (and Events API v2 for ``trigger``) through the ``pagerduty`` SDK."""

    def __init__(
        self,
        api_key: str,
        from_email: str,
        *,
        base_url: str = DEFAULT_API_URL,
        events_base_url: str = DEFAULT_EVENTS_URL,
        verify: bool | str | ssl.SSLContext = True,
        timeout: float = 10.0,
        max_rate_limit_retries: int = 3,
        network_attempts: int = 3,
        retry_backoff: float = 1.5,
    ) -> None:
        if not api_key:
            raise ConfigError("PagerDuty API token is empty")
        if not from_email:
            raise ConfigError("PagerDuty From email is required with the API token")
        for url in (base_url, events_base_url):
            if not url.startswith("https://"):
                raise ConfigError(f"PagerDuty URL must use https://, got {url!r}")
        self.from_email = from_email
        self._events_base_url = events_base_url.rstrip("/")
        # httpx2 deprecates (warns on) verify=<path>: build the context from the CA file here.
        try:
            self._verify: bool | ssl.SSLContext = (
                ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"PagerDuty CA bundle {verify!r} is unusable: {exc}") from exc
        self._timeout = timeout
        self._max_rate_limit_retries = max_rate_limit_retries
        self._network_attempts = network_attempts
        self._retry_backoff = retry_backoff
        self._rest = pagerduty.RestApiV2Client(
            api_key, default_from=from_email, base_url=base_url.rstrip("/"), verify=self._verify
        )
        self._tune(self._rest)
        self._events: dict[str, pagerduty.EventsApiV2Client] = {}
        self._closed = False

    def _tune(self, client: pagerduty.ApiClient) -> None:
        # The SDK annotates timeout as int; httpx2 takes a float.
        cast(Any, client).timeout = self._timeout
        # 429 is retried without limit by default; bound it (the final 429 then raises).
        client.retry[429] = self._max_rate_limit_retries
        client.max_network_attempts = max(self._network_attempts - 1, 0)
        client.sleep_timer = self._retry_backoff

    # -- REST API v2 ----------------------------------------------------------------------

    async def acknowledge(self, incident_id: str) -> PagerDutyChange:
        """``PUT /incidents/{id}`` status acknowledged (needs ``From``)."""
        body = {"type": "incident_reference", "status": "acknowledged"}
        raw = await self._call(
            "acknowledge incident", self._rest.rput, _incident_path(incident_id), json=body
        )
        incident = _incident(raw)
        log.info("pagerduty.acknowledged", extra={"incident_id": incident.id})
        return PagerDutyChange(
            incident_id=incident.id,
            event_type=EventType.INCIDENT_ACKNOWLEDGED,
            actor_email=self.from_email,
            incident=incident,
        )

    async def resolve(self, incident_id: str, resolution: str | None = None) -> PagerDutyChange:
        """``PUT /incidents/{id}`` status resolved; ``resolution`` goes on the Resolve log entry."""
        body: dict[str, str] = {"type": "incident_reference", "status": "resolved"}
        if resolution:
            body["resolution"] = resolution
        path = _incident_path(incident_id)
        raw = await self._call("resolve incident", self._rest.rput, path, json=body)
        incident = _incident(raw)
        log.info("pagerduty.resolved", extra={"incident_id": incident.id})
        return PagerDutyChange(
            incident_id=incident.id,
            event_type=EventType.INCIDENT_RESOLVED,
            actor_email=self.from_email,
            incident=incident,
        )

    async def reopen(self, incident_id: str) -> PagerDutyChange:
        """``PUT /incidents/{id}`` status triggered: a resolved incident is reopened (PagerDuty
        sends ``incident.reopened``)."""
        body = {"type": "incident_reference", "status": "triggered"}
        raw = await self._call("reopen incident", self._rest.rput, _incident_path(incident_id), json=body)
        incident = _incident(raw)
        log.info("pagerduty.reopened", extra={"incident_id": incident.id})
        return PagerDutyChange(
            incident_id=incident.id,
            event_type=EventType.INCIDENT_REOPENED,
            actor_email=self.from_email,
            incident=incident,
        )

    async def set_priority(
        self, incident_id: str, priority_id: str | None, urgency: Literal["high", "low"] | None
    ) -> PagerDutyChange:
        """``PUT /incidents/{id}`` with a ``priority_reference`` and/or ``urgency`` (needs ``From``).
        An unknown priority id is PagerDuty's 400."""
        body: dict[str, Any] = {"type": "incident_reference"}
        if priority_id is not None:
            body["priority"] = {"id": priority_id, "type": "priority_reference"}
        if urgency is not None:
            body["urgency"] = urgency
        raw = await self._call(
            "update incident priority", self._rest.rput, _incident_path(incident_id), json=body
        )
        incident = _incident(raw)
        log.info("pagerduty.priority_set", extra={"incident_id": incident.id, "priority_id": priority_id})
        return PagerDutyChange(
            incident_id=incident.id,
            event_type=EventType.INCIDENT_PRIORITY_UPDATED,
            actor_email=self.from_email,
            incident=incident,
        )

    async def reassign(self, incident_id: str, escalation_policy_id: str) -> PagerDutyIncident:
        """``PUT /incidents/{id}`` with an ``escalation_policy`` reference (needs ``From``):
        PagerDuty hands the incident to that policy and notifies its first level (it sends
        ``incident.reassigned``)."""
        body = {
            "type": "incident_reference",
            "escalation_policy": {"id": escalation_policy_id, "type": "escalation_policy_reference"},
        }
        raw = await self._call("reassign incident", self._rest.rput, _incident_path(incident_id), json=body)
        incident = _incident(raw)
        log.info("pagerduty.reassigned", extra={"incident_id": incident.id, "policy": escalation_policy_id})
        return incident

    async def create_incident(
        self,
        *,
        service_id: str,
        escalation_policy_id: str,
        title: str,
        urgency: Literal["high", "low"],
        incident_key: str,
        details: str,
    ) -> PagerDutyIncident:
        """``POST /incidents`` on a service, assigned to an escalation policy other than the
        service's own if need be (needs ``From``). PagerDuty refuses (400) a second open
        incident with the same ``incident_key`` on the service."""
        if not incident_key or len(incident_key) > DEDUP_KEY_LIMIT:
            raise ValueError(f"incident_key must be 1..{DEDUP_KEY_LIMIT} characters")
        body = {
            "type": "incident",
            "title": title if len(title) <= SUMMARY_LIMIT else title[: SUMMARY_LIMIT - 1] + "…",
            "service": {"id": service_id, "type": "service_reference"},
            "escalation_policy": {"id": escalation_policy_id, "type": "escalation_policy_reference"},
            "urgency": urgency,
            "incident_key": incident_key,
            "body": {"type": "incident_body", "details": details},
        }
        raw = await self._call("create incident", self._rest.rpost, "incidents", json=body)
        incident = _incident(raw)
        log.info("pagerduty.created", extra={"incident_id": incident.id, "policy": escalation_policy_id})
        return incident

    async def priorities(self) -> list[Priority]:
        """``GET /priorities`` (paginated): the account's priorities, highest first."""
        raw = await self._call("list priorities", self._rest.list_all, "priorities")
        found: list[Priority] = []
        for item in raw:
            entry = _mapping(item, "priority")
            priority_id = _require_str(entry, "id", "priority")
            name = _opt_str(entry, "name") or _opt_str(entry, "summary") or priority_id
            found.append(Priority(priority_id, name))
        return found

    async def add_note(self, incident_id: str, content: str) -> PagerDutyChange:
        """``POST /incidents/{id}/notes`` (needs ``From``)."""
        path = f"{_incident_path(incident_id)}/notes"
        raw = await self._call("add incident note", self._rest.rpost, path, json={"content": content})
        note = _mapping(raw, "note")
        note_id = _require_str(note, "id", "note")
        log.info("pagerduty.note_added", extra={"incident_id": incident_id, "note_id": note_id})
        return PagerDutyChange(
            incident_id=incident_id,
            event_type=EventType.INCIDENT_ANNOTATED,
            actor_email=self.from_email,
            note_id=note_id,
        )

    async def get_incident(self, incident_id: str) -> PagerDutyIncident:
        """``GET /incidents/{id}``."""
        raw = await self._call("get incident", self._rest.rget, _incident_path(incident_id))
        return _incident(raw)

    async def oncall_users(self, escalation_policy_id: str) -> list[OnCallUser]:
        """Who is on call now for a policy, lowest escalation level first.

        ``GET /oncalls?escalation_policy_ids[]=..&earliest=true&include[]=users`` (paginated);
        ``include[]=users`` makes the API return full users, so emails are present.
        """
        params = {
            "escalation_policy_ids[]": [escalation_policy_id],
            "earliest": "true",
            "include[]": ["users"],
        }
        raw = await self._call("list on-calls", self._rest.list_all, "oncalls", params=params)
        users: dict[tuple[str, int], OnCallUser] = {}
        for item in raw:
            entry = _mapping(item, "oncall")
            user = _mapping(entry.get("user"), "oncall.user")
            level = entry.get("escalation_level")
            if not isinstance(level, int):
                raise _unexpected("oncall.escalation_level is not an integer")
            user_id = _require_str(user, "id", "oncall.user")
            name = user.get("name") or user.get("summary") or user_id
            email = user.get("email")
            users.setdefault(
                (user_id, level),
                OnCallUser(
                    id=user_id,
                    name=str(name),
                    email=email if isinstance(email, str) else None,
                    escalation_level=level,
                ),
            )
        return sorted(users.values(), key=lambda u: (u.escalation_level, u.name, u.id))

    async def user_email(self, user_id: str) -> str | None:
        """``GET /users/{id}``: the user's login email (None when there is none)."""
        if not user_id:
            raise ValueError("user_id is empty")
        raw = await self._call("get user", self._rest.rget, f"users/{quote(user_id, safe='')}")
        return _opt_str(_mapping(raw, "user"), "email")

    # -- Events API v2 --------------------------------------------------------------------

    async def trigger(
        self,
        routing_key: str,
        summary: str,
        source: str,
        severity: Severity,
        dedup_key: str,
        *,
        timestamp: datetime | None = None,
        custom_details: Mapping[str, Any] | None = None,
    ) -> str:
        """Open (or add to) an alert via ``POST /v2/enqueue``; returns the dedup key.

        The timestamp is always sent explicitly (pagerduty 7.2.0's default is broken).
        """
        if severity not in ("critical", "error", "warning", "info"):
            raise ValueError(f"severity must be critical, error, warning or info, not {severity!r}")
        if not dedup_key or len(dedup_key) > DEDUP_KEY_LIMIT:
            raise ValueError(f"dedup_key must be 1..{DEDUP_KEY_LIMIT} characters")
        when = (timestamp or datetime.now(UTC)).astimezone(UTC)
        client = self._events_client(routing_key)
        if len(summary) > SUMMARY_LIMIT:
            summary = summary[: SUMMARY_LIMIT - 1] + "…"
        key = await self._call(
            "trigger event",
            client.trigger,
            summary,
            source,
            dedup_key=dedup_key,
            severity=severity,
            payload={"timestamp": when.isoformat(timespec="milliseconds")},
            custom_details=dict(custom_details) if custom_details is not None else None,
        )
        if not isinstance(key, str):
            raise _unexpected("events API returned no dedup_key")
        return key

    def _events_client(self, routing_key: str) -> pagerduty.EventsApiV2Client:
        if self._closed:
            raise IntegrationError(SYSTEM, "client is closed")
        client = self._events.get(routing_key)
        if client is None:
            client = pagerduty.EventsApiV2Client(
                routing_key, base_url=self._events_base_url, verify=self._verify
            )
            self._tune(client)
            self._events[routing_key] = client
        return client

    # -- lifecycle and plumbing -----------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        clients: list[pagerduty.ApiClient] = [self._rest, *self._events.values()]
        self._events.clear()
        for client in clients:
            await asyncio.to_thread(client.close)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise IntegrationError(SYSTEM, f"{what}: client is closed")
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except pagerduty.Error as exc:
            raise _sdk_error(what, exc) from exc
        except (pagerduty.UrlError, httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise IntegrationError(SYSTEM, f"{what}: {type(exc).__name__}: {exc}") from exc


def _incident_path(incident_id: str) -> str:
    if not incident_id:
        raise ValueError("incident_id is empty")
    return f"incidents/{quote(incident_id, safe='')}"


def _sdk_error(what: str, exc: pagerduty.Error) -> IntegrationError:
    response = exc.response
    if response is None:
        # Transport failure after the SDK's own retries; the cause is chained.
        cause = exc.__cause__
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return IntegrationError(SYSTEM, f"{what}: {detail}")
    status = response.status_code
    return IntegrationError(SYSTEM, f"{what}: HTTP {status}: {_api_message(response)}", status=status)


def _api_message(response: httpx2.Response) -> str:
    """PagerDuty's ``{"error": {"message", "errors": [...]}}``, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message", ""))
        details = error.get("errors")
        if isinstance(details, list) and details:
            message += ": " + "; ".join(str(d) for d in details)
        return message or response.reason_phrase
    return response.text[:200]


def _unexpected(detail: str) -> IntegrationError:
    return IntegrationError(SYSTEM, f"unexpected response: {detail}")


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _unexpected(f"{what} is not an object")
    return value


def _require_str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _unexpected(f"{what}.{key} is missing")
    return value


def _opt_str(obj: Mapping[str, Any] | None, key: str) -> str | None:
    if obj is None:
        return None
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _incident(raw: object) -> PagerDutyIncident:
    data = _mapping(raw, "incident")
    status = data.get("status")
    if status not in tuple(IncidentStatus):
        raise _unexpected(f"incident.status {status!r}")
    parsed_status = IncidentStatus(status)
    service = data.get("service") if isinstance(data.get("service"), dict) else None
    policy = data.get("escalation_policy") if isinstance(data.get("escalation_policy"), dict) else None
    number = data.get("incident_number", data.get("number"))
    return PagerDutyIncident(
        id=_require_str(data, "id", "incident"),
        number=number if isinstance(number, int) else None,
        title=_opt_str(data, "title") or _opt_str(data, "summary") or "",
        status=parsed_status,
        urgency=_opt_str(data, "urgency"),
        incident_key=_opt_str(data, "incident_key"),
        html_url=_opt_str(data, "html_url"),
        service_id=_opt_str(service, "id"),
        service_name=_opt_str(service, "summary"),
        escalation_policy_id=_opt_str(policy, "id"),
    )
