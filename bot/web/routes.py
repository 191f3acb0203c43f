"""The aiohttp application: routes and the request middleware."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.obs import logs
from bot.web.handlers import Handlers

log = logs.logger(logs.Component.APP)


@web.middleware
async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
    """Give every request an id in the logs; never show a traceback to a caller."""
    request_id = request.headers.get("X-Request-Id") or secrets.token_hex(6)
    started = time.perf_counter()
    try:
        with logs.context(request_id=request_id):
            response: web.StreamResponse = await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("http.error", extra={"request_id": request_id, "path": request.path})
        return web.json_response(
            {"status": "error", "error": "internal error", "ref": request_id}, status=500
        )
    response.headers["X-Request-Id"] = request_id
    if log.isEnabledFor(logging.DEBUG) and (
        request.path.startswith("/webhooks/") or request.path == "/slack/events"
    ):
        log.debug(
            "http.request",
            extra={
                "request_id": request_id,
                "path": request.path,
                "status": response.status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
    return response


def build_web_app(
    handlers: Handlers, bolt: AsyncApp, *, max_body_bytes: int, socket_mode: bool
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[request_context])

    async def slack_events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        bolt_response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    app.router.add_post("/webhooks/alertmanager", handlers.alertmanager)
    app.router.add_post("/webhooks/pagerduty", handlers.pagerduty)
    # In Socket Mode Bolt skips signature checks, so the HTTP route must not exist at all.
    if not socket_mode:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    return app
