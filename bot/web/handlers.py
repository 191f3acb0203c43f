"""HTTP handlers: webhooks, health and metrics. Parse at the edge, store, then 2xx."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from bot.core.ports import Clock
from bot.flows.gate import IntakeGate
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.sources.alertmanager import PayloadError, parse_payload
from bot.sources.pagerduty import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    PagerDutyWebhookError,
    parse_webhook,
    verify_signature,
)
from bot.store.inbox import Inbox

log = logs.logger(logs.Component.HTTP)
READY_TIMEOUT_S = 2.0


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"status": "error", "error": reason}, status=status)


def bearer_ok(header: str | None, token: bytes) -> bool:
    """Constant-time check of `Authorization: Bearer <token>`."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


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
        max_body_bytes: int,
    ) -> None:
        self.inbox = inbox
        self.wake = wake
        self.gate = gate
        self._metrics = metrics
        self.probes = dict(probes)
        self.clock = clock
        self._token = alertmanager_token.get_secret_value().encode()
        self.pagerduty_secret = pagerduty_secret
        self.max_body_bytes = max_body_bytes
        # Bound once: the hot path increments without a label lookup.
        self._am_received = metrics.webhooks_received.labels("alertmanager")

    async def alertmanager(self, request: web.Request) -> web.Response:
        with self.gate.request():
            return await self._alertmanager(request)

    async def _alertmanager(self, request: web.Request) -> web.Response:
        metrics = self._metrics
        if not bearer_ok(request.headers.get("Authorization"), self._token):
            metrics.webhooks_rejected.labels("alertmanager", "unauthorized").inc()
            return _json_error(401, "missing or invalid bearer token")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.webhooks_rejected.labels("alertmanager", "too_large").inc()
            return _json_error(413, f"body larger than {self.max_body_bytes} bytes")
        try:
            payload = parse_payload(raw)
        except PayloadError as exc:
            metrics.webhooks_rejected.labels("alertmanager", "invalid").inc()
            return _json_error(400, str(exc))
        try:
            inbox_id = await self.inbox.insert_delivery(
                "alertmanager", raw.decode("utf-8"), subject=payload.group_key
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # Not stored: a 5xx makes Alertmanager retry the delivery.
            log.error("webhook.store_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            metrics.webhooks_rejected.labels("alertmanager", "storage").inc()
            return _json_error(503, "storage unavailable, retry later")
        self._am_received.inc()
        self.wake()
        return web.json_response({"status": "accepted", "id": inbox_id})

    async def pagerduty(self, request: web.Request) -> web.Response:
        """PagerDuty V3 webhook: signature first, then a durable insert deduplicated on the
        X-Webhook-Id (PagerDuty retries for 48 h), then 202."""
        with self.gate.request():
            return await self._pagerduty(request)

    async def _pagerduty(self, request: web.Request) -> web.Response:
        metrics = self._metrics
        secret = self.pagerduty_secret
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.webhooks_rejected.labels("pagerduty", "too_large").inc()
            return _json_error(413, "body too large")
        secrets_list = [s.strip() for s in secret.get_secret_value().split(",")] if secret else []
        if not secrets_list or not verify_signature(secrets_list, raw, request.headers.get(SIGNATURE_HEADER)):
            metrics.webhooks_rejected.labels("pagerduty", "unauthorized").inc()
            return _json_error(401, "missing or invalid X-PagerDuty-Signature")
        try:
            event = parse_webhook(raw)
        except PagerDutyWebhookError as exc:
            metrics.webhooks_rejected.labels("pagerduty", "invalid").inc()
            # PagerDuty drops 4xx without retrying; a malformed body would never get better.
            return _json_error(400, str(exc))
        webhook_id = request.headers.get(WEBHOOK_ID_HEADER) or None
        try:
            inbox_id = await self.inbox.insert_delivery(
                "pagerduty", raw.decode("utf-8"), webhook_id, subject=event.incident_id
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.error(
                "webhook.store_failed", extra={"source": "pagerduty", "error": f"{type(exc).__name__}: {exc}"}
            )
            metrics.webhooks_rejected.labels("pagerduty", "storage").inc()
            return _json_error(503, "storage unavailable, retry later")
        metrics.webhooks_received.labels("pagerduty").inc()
        self.wake()
        return web.json_response(
            {"status": "accepted", "id": inbox_id, "duplicate": inbox_id is None}, status=202
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        failed: dict[str, str] = {}

        async def check(name: str, probe: Callable[[], Awaitable[None]]) -> None:
            try:
                await asyncio.wait_for(probe(), READY_TIMEOUT_S)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__

        await asyncio.gather(*(check(name, probe) for name, probe in self.probes.items()))
        if failed:
            return web.json_response({"status": "unavailable", "failed": failed}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        now = self.clock()
        try:
            self._metrics.inbox_pending.set(await self.inbox.pending_deliveries())
            self._metrics.inbox_oldest_age.set(await self.inbox.oldest_pending_age(now))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # gauges keep their last value while Postgres is away; /readyz reports it
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
