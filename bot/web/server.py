"""The aiohttp application and the bot's lifecycle: start, serve, drain on SIGTERM, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any, cast

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from bot.obs import logs
from bot.web.handlers import Handlers

log = logging.getLogger("incidentbot.app")
DRAIN_TIMEOUT_S = 20.0


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


def build_web_app(deps: Deps, bolt: AsyncApp) -> web.Application:
    handlers = Handlers(deps)
    app = web.Application(client_max_size=deps.settings.max_body_bytes, middlewares=[request_context])

    async def slack_events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        bolt_response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    app.router.add_post("/webhooks/alertmanager", handlers.alertmanager)
    app.router.add_post("/webhooks/pagerduty", handlers.pagerduty)
    # In Socket Mode Bolt skips signature checks, so the HTTP route must not exist at all.
    if not deps.settings.socket_mode:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    return app


class BotServer:
    """One running bot: HTTP server, intake workers, the sweep, optional Socket Mode."""

    def __init__(self, deps: Deps, bolt: AsyncApp, web_app: web.Application) -> None:
        self.deps = deps
        self.bolt = bolt
        self.web_app = web_app
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._socket: AsyncSocketModeHandler | None = None
        self.port: int = 0

    async def start(self) -> None:
        settings = self.deps.settings
        self._runner = web.AppRunner(self.web_app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else settings.http_port
        for i in range(settings.worker_count):
            self._loops.append(
                asyncio.create_task(
                    self.deps.pipeline.worker(self._stop, settings.sweep_interval_seconds), name=f"worker-{i}"
                )
            )
        self._loops.append(asyncio.create_task(self._sweep(), name="sweep"))
        if settings.slack_app_token is not None:
            self._socket = AsyncSocketModeHandler(
                self.bolt, app_token=settings.slack_app_token.get_secret_value()
            )
            await cast(Any, self._socket).connect_async()
        log.info("bot.started", extra={"port": self.port, "socket_mode": self._socket is not None})

    async def _sweep(self) -> None:
        """Finish what a crash or an outage interrupted: stored deliveries and unpublished
        incidents, checked at start and every few seconds."""
        while not self._stop.is_set():
            try:
                self.deps.pipeline.wake()
                for incident_id in await self.deps.store.unpublished_incidents():
                    self.deps.publisher.request(incident_id)
                for task in self.deps.sweep_tasks:
                    await task()
            except Exception:
                log.exception("sweep.error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.deps.settings.sweep_interval_seconds)

    async def stop(self) -> None:
        """Graceful: stop taking requests, let workers finish the delivery in hand, let
        publishing tasks finish (bounded), then close connections."""
        log.info("bot.stopping")
        if self._socket is not None:
            await cast(Any, self._socket).close_async()
        if self._runner is not None:
            await self._runner.shutdown()
        self._stop.set()
        if self._loops:
            await asyncio.wait(self._loops, timeout=DRAIN_TIMEOUT_S)
        await self.deps.supervisor.drain(DRAIN_TIMEOUT_S)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.deps.close()
        log.info("bot.stopped")
