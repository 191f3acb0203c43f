"""HTTP handlers: webhooks, health and metrics. Authenticate before reading when the
credential is a header, read within limits, parse at the edge, store, then 2xx."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from redis.exceptions import RedisError

from bot.core.ports import Clock
from bot.flows.gate import IntakeGate
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.sources.alertmanager import PayloadError, receive
from bot.sources.pagerduty import (
    MAX_EVENT_AGE,
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    PagerDutyEvent,
    PagerDutyWebhookError,
    parse_webhook,
    signature_header_ok,
    too_old,
    verify_signature,
)
from bot.store.inbox import Inbox
from bot.web.bodies import BodyReader, Refused

log = logs.logger(logs.Component.HTTP)
READY_TIMEOUT_S = 2.0
# Not stored, so a 5xx makes the sender retry the delivery.
STORAGE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"status": "error", "error": reason}, status=status)


def bearer_ok(header: str | None, token: bytes) -> bool:
    """Constant-time check of `Authorization: Bearer <token>`; an empty token matches nothing."""
    if not header or not token:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


def _probe_failure(exc: BaseException) -> str:
    """What /readyz says about a failed dependency: the kind of failure only, never the
    exception text (it carries host names, ports and DSNs)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError | RedisError | asyncpg.InterfaceError):
        return "unreachable"
    return "error"


class Handlers:
    def __init__(
        self,
        inbox: Inbox,
        wake: Callable[[], None],
        gate: IntakeGate,
        metrics: Metrics,
        probes: Mapping[str, Callable[[], Awaitable[None]]],
        clock: Clock,
        *,
        alertmanager_token: SecretStr,
        pagerduty_secret: SecretStr | None,
        alertmanager_body: BodyReader,
        pagerduty_body: BodyReader,
        wall_clock: Callable[[], float],
        details: Mapping[str, str] | None = None,
    ) -> None:
        self.inbox = inbox
        # Said by /readyz whatever the probes find (e.g. whether the investigator is on); read
        # at each request, as a detail may change while the bot runs.
        self.details = details or {}
        self.wake = wake
        self.gate = gate
        self._metrics = metrics
        self.probes = dict(probes)
        self.clock = clock
        self._token = alertmanager_token.get_secret_value().encode()
        self._pagerduty_secrets = (
            [s.strip() for s in pagerduty_secret.get_secret_value().split(",")] if pagerduty_secret else []
        )
        self.alertmanager_body = alertmanager_body
        self.pagerduty_body = pagerduty_body
        # Real time, not the domain clock: a delivery's age is measured against the world.
        self.wall_clock = wall_clock
        # Bound once: the hot path increments without a label lookup.
        self._am_received = metrics.webhooks_received.labels("alertmanager")

    def _refused(self, source: str, refused: Refused) -> web.Response:
        self._metrics.webhooks_rejected.labels(source, refused.label).inc()
        return refused.response()

    async def alertmanager(self, request: web.Request) -> web.Response:
        try:
            if not bearer_ok(request.headers.get("Authorization"), self._token):
                raise Refused(401, "missing or invalid bearer token", "unauthorized")
            raw = await self.alertmanager_body.read(request)
            with self.gate.request():
                return await self._store_alertmanager(raw)
        except Refused as refused:
            return self._refused("alertmanager", refused)

    async def _store_alertmanager(self, raw: bytes) -> web.Response:
        try:
            received = receive(raw)
        except PayloadError as exc:
            raise Refused(400, str(exc), "invalid") from None
        inbox_id = await self._store("alertmanager", received.body, None, received.payload.group_key)
        if received.repairs:
            self._metrics.webhooks_repaired.labels("alertmanager").inc(received.repairs)
        self._am_received.inc()
        self.wake()
        return web.json_response({"status": "accepted", "id": inbox_id})

    async def pagerduty(self, request: web.Request) -> web.Response:
        """PagerDuty V3 webhook: a plausible signature header before the body is read, the
        signature over the body, then a durable insert deduplicated on the signed event id
        (PagerDuty retries for 48 h), then 202."""
        try:
            if not self._pagerduty_secrets or not signature_header_ok(request.headers.get(SIGNATURE_HEADER)):
                raise Refused(401, f"missing or invalid {SIGNATURE_HEADER}", "unauthorized")
            raw = await self.pagerduty_body.read(request)
            if not verify_signature(self._pagerduty_secrets, raw, request.headers.get(SIGNATURE_HEADER)):
                raise Refused(401, f"missing or invalid {SIGNATURE_HEADER}", "unauthorized")
            with self.gate.request():
                return await self._store_pagerduty(raw, request.headers.get(WEBHOOK_ID_HEADER, "").strip())
        except Refused as refused:
            return self._refused("pagerduty", refused)

    async def _store_pagerduty(self, raw: bytes, webhook_id: str) -> web.Response:
        # PagerDuty sends X-Webhook-Id on every delivery; a request without it is not one.
        if not webhook_id:
            raise Refused(400, f"missing {WEBHOOK_ID_HEADER}", "invalid")
        try:
            event = parse_webhook(raw)
        except PagerDutyWebhookError as exc:
            # PagerDuty drops 4xx without retrying; a malformed body would never get better.
            raise Refused(400, str(exc), "invalid") from None
        if too_old(event, datetime.fromtimestamp(self.wall_clock(), UTC)):
            return self._ignore_old(event, webhook_id)
        inbox_id = await self._store("pagerduty", raw, event.id, event.incident_id)
        self._metrics.webhooks_received.labels("pagerduty").inc()
        self.wake()
        return web.json_response(
            {"status": "accepted", "id": inbox_id, "duplicate": inbox_id is None}, status=202
        )

    def _ignore_old(self, event: PagerDutyEvent, webhook_id: str) -> web.Response:
        """An event from before PagerDuty's retry window is a replay: never applied. Answered
        2xx, not 4xx: either stops PagerDuty retrying, but PagerDuty disables a subscription
        (and drops its queued webhooks) after three 4xx in a row, which a late delivery of
        ours must never cost."""
        hours = int(MAX_EVENT_AGE.total_seconds() // 3600)
        log.warning(
            "pagerduty.old_event_ignored",
            extra={
                "event_id": event.id,
                "webhook_id": webhook_id,
                "occurred_at": event.occurred_at.isoformat(),
            },
        )
        self._metrics.webhooks_rejected.labels("pagerduty", "too_old").inc()
        reason = f"event occurred more than {hours} h ago (PagerDuty retries for 48 h): not applied"
        return web.json_response({"status": "ignored", "reason": reason}, status=202)

    async def _store(
        self, source: str, raw: bytes, delivery_id: str | None, subject: str | None
    ) -> int | None:
        try:
            return await self.inbox.insert_delivery(source, raw.decode("utf-8"), delivery_id, subject=subject)
        except asyncpg.DataError as exc:
            # PostgreSQL refuses this body (the parsers refuse what they know of): retrying
            # would not change that.
            log.warning("webhook.unstorable", extra={"source": source, "error": type(exc).__name__})
            raise Refused(400, "body cannot be stored", "invalid") from None
        except STORAGE_ERRORS as exc:
            log.error(
                "webhook.store_failed", extra={"source": source, "error": f"{type(exc).__name__}: {exc}"}
            )
            raise Refused(503, "storage unavailable, retry later", "storage") from None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        failed: dict[str, str] = {}

        async def check(name: str, probe: Callable[[], Awaitable[None]]) -> None:
            try:
                await asyncio.wait_for(probe(), READY_TIMEOUT_S)
            except Exception as exc:
                failed[name] = _probe_failure(exc)
                # The details stay in the log, which only operators read.
                log.warning(
                    "ready.probe_failed", extra={"dependency": name, "error": f"{type(exc).__name__}: {exc}"}
                )

        await asyncio.gather(*(check(name, probe) for name, probe in self.probes.items()))
        extra = {"detail": dict(self.details)} if self.details else {}
        if failed:
            return web.json_response({"status": "unavailable", "failed": failed, **extra}, status=503)
        return web.json_response({"status": "ready", **extra})

    async def metrics(self, request: web.Request) -> web.Response:
        now = self.clock()
        try:
            self._metrics.inbox_pending.set(await self.inbox.pending_deliveries())
            self._metrics.inbox_oldest_age.set(await self.inbox.oldest_pending_age(now))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # gauges keep their last value while Postgres is away; /readyz reports it
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
