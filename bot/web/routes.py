"""The aiohttp application: routes, the request middleware, and the server's connection limits."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from aiohttp import web

from bot.obs import logs
from bot.web.handlers import Handlers
from bot.web.slack import SlackEdge

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


def build_web_app(handlers: Handlers, slack: SlackEdge | None, *, client_max_size: int) -> web.Application:
    """The routes. ``slack`` is None in Socket Mode: Bolt skips signature checks there, so the
    HTTP route must not exist at all. Each route reads its body within its own limit;
    ``client_max_size`` (the largest of them) only backs that up."""
    app = web.Application(client_max_size=client_max_size, middlewares=[request_context])
    app.router.add_post("/webhooks/alertmanager", handlers.alertmanager)
    app.router.add_post("/webhooks/pagerduty", handlers.pagerduty)
    if slack is not None:
        app.router.add_post("/slack/events", slack.events)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    return app


def build_runner(
    app: web.Application, *, header_timeout_s: float, shutdown_timeout_s: float
) -> web.AppRunner:
    """The server around the routes, cutting slow and abandoned connections off.

    aiohttp closes a connection whose request headers are not complete when its keep-alive
    timer runs out (the timer starts when the connection opens and after each response), so
    ``keepalive_timeout`` is the header timeout, and the idle limit between requests too.
    Bodies have their own timeout in each route (bot.web.bodies)."""
    return web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=shutdown_timeout_s,
        keepalive_timeout=header_timeout_s,
        # A handler whose client went away stops (a body read no longer waits for it).
        handler_cancellation=True,
        # After a refusal, drain what the client still sends for a moment only (so it can
        # read the answer) instead of up to 10 s.
        lingering_time=1.0,
        # No webhook sender compresses its body; a compressed one could expand far past a
        # route's limit within a single read.
        auto_decompress=False,
    )
