"""HTTP handlers: webhooks, health and metrics. Parse at the edge, store, then 2xx."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.deps import Deps
from bot.sources.alertmanager import PayloadError, parse_payload
from bot.sources.pagerduty import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    PagerDutyWebhookError,
    parse_webhook,
    verify_signature,
)

log = logging.getLogger("incidentbot.http")
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
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._token = deps.settings.alertmanager_webhook_token.get_secret_value().encode()
        # Bound once: the hot path increments without a label lookup.
        self._am_received = deps.metrics.webhooks_received.labels("alertmanager")

    async def alertmanager(self, request: web.Request) -> web.Response:
        with self.deps.pipeline.gate.request():
            return await self._alertmanager(request)

    async def _alertmanager(self, request: web.Request) -> web.Response:
        metrics = self.deps.metrics
        if not bearer_ok(request.headers.get("Authorization"), self._token):
            metrics.webhooks_rejected.labels("alertmanager", "unauthorized").inc()
            return _json_error(401, "missing or invalid bearer token")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.webhooks_rejected.labels("alertmanager", "too_large").inc()
            return _json_error(413, f"body larger than {self.deps.settings.max_body_bytes} bytes")
        try:
            payload = parse_payload(raw)
        except PayloadError as exc:
            metrics.webhooks_rejected.labels("alertmanager", "invalid").inc()
            return _json_error(400, str(exc))
        try:
            inbox_id = await self.deps.pipeline.inbox.insert_delivery(
                "alertmanager", raw.decode("utf-8"), subject=payload.group_key
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # Not stored: a 5xx makes Alertmanager retry the delivery.
            log.error("webhook.store_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            metrics.webhooks_rejected.labels("alertmanager", "storage").inc()
            return _json_error(503, "storage unavailable, retry later")
        self._am_received.inc()
        self.deps.pipeline.wake()
        return web.json_response({"status": "accepted", "id": inbox_id})

    async def pagerduty(self, request: web.Request) -> web.Response:
        """PagerDuty V3 webhook: signature first, then a durable insert deduplicated on the
        X-Webhook-Id (PagerDuty retries for 48 h), then 202."""
        with self.deps.pipeline.gate.request():
            return await self._pagerduty(request)

    async def _pagerduty(self, request: web.Request) -> web.Response:
        metrics = self.deps.metrics
        secret = self.deps.settings.pagerduty_webhook_secret
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
            inbox_id = await self.deps.pipeline.inbox.insert_delivery(
                "pagerduty", raw.decode("utf-8"), webhook_id, subject=event.incident_id
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.error(
                "webhook.store_failed", extra={"source": "pagerduty", "error": f"{type(exc).__name__}: {exc}"}
            )
            metrics.webhooks_rejected.labels("pagerduty", "storage").inc()
            return _json_error(503, "storage unavailable, retry later")
        metrics.webhooks_received.labels("pagerduty").inc()
        self.deps.pipeline.wake()
        return web.json_response(
            {"status": "accepted", "id": inbox_id, "duplicate": inbox_id is None}, status=202
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        failed: dict[str, str] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                await asyncio.wait_for(probe(), READY_TIMEOUT_S)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__

        await asyncio.gather(check("postgres", self.deps.store.ping), check("redis", self.deps.coord.ping))
        if failed:
            return web.json_response({"status": "unavailable", "failed": failed}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        now = self.deps.clock()
        try:
            self.deps.metrics.inbox_pending.set(await self.deps.pipeline.inbox.pending_deliveries())
            self.deps.metrics.inbox_oldest_age.set(await self.deps.pipeline.inbox.oldest_pending_age(now))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # gauges keep their last value while Postgres is away; /readyz reports it
        body = generate_latest(self.deps.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
