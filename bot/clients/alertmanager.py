"""Alertmanager API v2 client (silences and alerts) on the bot's aiohttp session.

Checked against Alertmanager 0.25: POST /api/v2/silences answers {"silenceID": ...};
GET /api/v2/silence/{id} answers 404 for an unknown id; DELETE /api/v2/silence/{id} answers
200 even for an already expired silence and 500 "silence not found" for an unknown one.
Errors come back as a JSON string or {"code", "message"}. Every failure becomes
`IntegrationError(system="alertmanager")`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.core.errors import IntegrationError

SYSTEM = "alertmanager"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher: name=value, name!=value, name=~regex or name!~regex."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        if not _LABEL_NAME.fullmatch(self.name):
            raise ValueError(f"invalid label name {self.name!r}")

    @property
    def operator(self) -> str:
        """ "=", "!=", "=~" or "!~"."""
        return ("=" if self.is_equal else "!") + ("~" if self.is_regex else ("" if self.is_equal else "="))

    def to_filter(self) -> str:
        """The matcher in Alertmanager's filter syntax, value quoted and escaped: code="5\\"00"."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.operator}"{escaped}"'

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Matcher:
        return cls(
            name=str(raw["name"]),
            value=str(raw["value"]),
            is_regex=bool(raw.get("isRegex", False)),
            is_equal=bool(raw.get("isEqual", True)),
        )


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence as Alertmanager reports it; `state` is "active", "pending" or "expired"."""

    id: str
    state: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    updated_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state == "active"


def _timestamp(name: str, moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"not a timestamp: {raw!r}")
    return datetime.fromisoformat(raw)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _error_message(status: int, body: str) -> str:
    try:
        payload: object = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, str):
        text = payload
    elif isinstance(payload, Mapping) and "message" in payload:
        text = str(payload["message"])
    else:
        text = body
    text = text.strip()
    return _short(text) if text else f"HTTP {status}"


def parse_silence(raw: object) -> Silence:
    """Build a Silence from GET /api/v2/silence/{id} JSON (raises ValueError if malformed)."""
    if not isinstance(raw, Mapping):
        raise ValueError("silence is not an object")
    try:
        status = raw.get("status") or {}
        matchers = raw.get("matchers") or []
        if not isinstance(status, Mapping) or not isinstance(matchers, list):
            raise ValueError("bad status or matchers")
        updated = raw.get("updatedAt")
        return Silence(
            id=str(raw["id"]),
            state=str(status.get("state", "")),
            matchers=tuple(Matcher.from_api(m) for m in matchers),
            starts_at=_parse_time(raw["startsAt"]),
            ends_at=_parse_time(raw["endsAt"]),
            created_by=str(raw.get("createdBy", "")),
            comment=str(raw.get("comment", "")),
            updated_at=_parse_time(updated) if updated else None,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed silence: {exc!r}") from exc


class AlertmanagerSilences:
    """Silences and alerts through Alertmanager's API v2.

    The aiohttp session belongs to the caller (the bot shares one); `timeout` bounds each
    request in seconds. `headers` (e.g. an Authorization header for a proxy in front of
    Alertmanager) are sent with every request.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = dict(headers or {})

    async def create_silence(
        self,
        matchers: Sequence[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """Create a silence and return its id."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        body = {
            "matchers": [m.to_api() for m in matchers],
            "startsAt": _timestamp("starts_at", starts_at),
            "endsAt": _timestamp("ends_at", ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        _, payload = await self._request("POST", "/api/v2/silences", json_body=body)
        if not isinstance(payload, Mapping) or not isinstance(payload.get("silenceID"), str):
            raise IntegrationError(SYSTEM, _short(f"unexpected create-silence answer: {payload!r}"))
        silence_id: str = payload["silenceID"]
        return silence_id

    async def expire_silence(self, silence_id: str) -> None:
        """Expire a silence now. Expiring an already expired silence succeeds."""
        await self._request("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")

    async def get_silence(self, silence_id: str) -> Silence | None:
        """The silence with this id, or None when Alertmanager does not know it."""
        status, payload = await self._request(
            "GET", f"/api/v2/silence/{quote(silence_id, safe='')}", missing_ok=True
        )
        if status == 404:
            return None
        try:
            return parse_silence(payload)
        except ValueError as exc:
            raise IntegrationError(SYSTEM, _short(str(exc))) from exc

    async def alerts(
        self,
        matchers: Sequence[Matcher] = (),
        *,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
        receiver: str | None = None,
    ) -> list[dict[str, Any]]:
        """Alerts matching all `matchers` (GET /api/v2/alerts), as Alertmanager's JSON objects.

        Each has "labels", "annotations", "startsAt", "endsAt", "fingerprint", "receivers" and
        "status": {"state": "active"|"suppressed"|"unprocessed", "silencedBy", "inhibitedBy"}.
        """
        params: list[tuple[str, str]] = [("filter", m.to_filter()) for m in matchers]
        params += [
            ("active", _flag(active)),
            ("silenced", _flag(silenced)),
            ("inhibited", _flag(inhibited)),
            ("unprocessed", _flag(unprocessed)),
        ]
        if receiver is not None:
            params.append(("receiver", receiver))
        _, payload = await self._request("GET", "/api/v2/alerts", params=params)
        if not isinstance(payload, list) or not all(isinstance(a, dict) for a in payload):
            raise IntegrationError(SYSTEM, "unexpected alerts answer: not a list of objects")
        return payload

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: object = None,
        params: Sequence[tuple[str, str]] = (),
        missing_ok: bool = False,
    ) -> tuple[int, object]:
        try:
            async with self._session.request(
                method,
                self.url + path,
                json=json_body,
                params=list(params) or None,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
            raise IntegrationError(SYSTEM, "request timed out") from exc
        except aiohttp.ClientError as exc:
            raise IntegrationError(SYSTEM, _short(f"cannot reach Alertmanager: {exc}")) from exc
        if missing_ok and status == 404:
            return status, None
        if not 200 <= status < 300:
            raise IntegrationError(SYSTEM, _error_message(status, text), status=status)
        if not text.strip():
            return status, None
        try:
            payload: object = json.loads(text)
        except ValueError as exc:
            raise IntegrationError(SYSTEM, "answer is not JSON", status=status) from exc
        return status, payload


def _flag(value: bool) -> str:
    return "true" if value else "false"


__all__ = ["AlertmanagerSilences", "Matcher", "Silence", "parse_silence"]
