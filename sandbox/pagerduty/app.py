"""A fake PagerDuty: REST API v2 and Events API v2 over TLS, and V3 webhooks out to the bot.

It speaks the calls the bot makes (protocols B.2, B.3) strictly enough for the real
``pagerduty`` SDK to be tested against it:

- every REST call needs ``Authorization: Token token=<key>`` (401 otherwise) and
  ``Accept: application/vnd.pagerduty+json;version=2`` (406 otherwise);
- ``PUT /incidents/{id}``, ``PUT /incidents`` and ``POST /incidents/{id}/notes`` need a
  ``From`` header holding a known user's email and a JSON body (400 otherwise);
- unknown incidents are 404; errors use PagerDuty's ``{"error": {message, code, errors}}``.

Routes: ``GET/PUT /incidents``, ``GET/PUT /incidents/{id}`` (status, urgency, title and a
``priority_reference``; an unknown priority is a 400), ``GET/POST /incidents/{id}/notes``,
``GET /oncalls``, ``GET /users[/{id}]``, ``GET /services/{id}``, ``GET
/escalation_policies/{id}``, ``GET /priorities`` (P1..P5), ``POST /v2/enqueue`` (Events API, routing key = a
service's ``integration_key``; point ``EventsApiV2Client`` at :attr:`base_url`).

The server uses TLS with a throwaway trustme CA (the SDK only accepts ``https://``); give
:attr:`PagerDutySandbox.ca_path` to the client as its CA file.

Webhooks: :meth:`PagerDutySandbox.send_webhook` posts a signed V3 webhook to any URL (as a
change made in PagerDuty's UI would). When the bot changes an incident through the API,
the sandbox sends the matching webhook to :attr:`webhook_url` too, in order, as real
PagerDuty does, so tests can prove the bot does not loop on its own changes. Turn that off
with ``emit_webhooks=False``.

Seed data: users alice/bob/carol ``@example.com`` (the Slack sandbox's default users),
escalation policies ``PE00001`` (alice, then bob) and ``PE00002`` (carol, then alice),
services ``PS00001`` checkout-api and ``PS00002`` payments. No incidents.

Tests wait with :meth:`wait_for`, which wakes on every state change (no polling).

The package splits it by concern: ``models`` (objects, errors), ``state`` (the account, incident
transitions), ``representations`` (JSON shapes), ``webhooks`` (signing and sending), ``rest``
(REST API v2), ``events`` (Events API v2), ``wire`` (bodies and paging) and ``app`` (TLS server,
authentication, injected failures, request recording).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from sandbox.pagerduty.events import EventsApi
from sandbox.pagerduty.models import ACCEPT_V2, HOST, RATE_LIMIT, WEBHOOK_TIMEOUT, ApiError, RecordedRequest
from sandbox.pagerduty.rest import RestApi


class PagerDutySandbox(RestApi, EventsApi):
    """Fake PagerDuty on ``https://127.0.0.1:<port>``. Use as ``async with PagerDutySandbox():``."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="pagerduty-sandbox-")
        ca_file = Path(self._tmpdir.name) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(ca_file))
        self._ca_path = str(ca_file)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(HOST, "localhost").configure_cert(server_ctx)

        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.get("/incidents", self._list_incidents),
                web.post("/incidents", self._create),
                web.put("/incidents", self._bulk_update),
                web.get("/incidents/{id}", self._get_incident),
                web.put("/incidents/{id}", self._update_incident),
                web.get("/incidents/{id}/notes", self._list_notes),
                web.post("/incidents/{id}/notes", self._create_note),
                web.get("/oncalls", self._oncalls),
                web.get("/users", self._list_users),
                web.get("/users/{id}", self._get_user),
                web.get("/services/{id}", self._get_service),
                web.get("/escalation_policies/{id}", self._get_policy),
                web.get("/priorities", self._list_priorities),
                web.post("/v2/enqueue", self._enqueue),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0, ssl_context=server_ctx)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        self._worker = asyncio.create_task(self._deliver_emitted(), name="pagerduty-sandbox-webhooks")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def ca_path(self) -> str:
        """PEM file of the CA that signed the server certificate (the client's ``verify``)."""
        if self._ca_path is None:
            raise RuntimeError("PagerDutySandbox is not started")
        return self._ca_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this sandbox (for aiohttp or other clients)."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    # -- HTTP plumbing ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        is_events = request.path.startswith("/v2/")
        try:
            if not is_events:
                self._check_rest_headers(request)
            self._injected_failure(request)
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            # Unknown route or method: PagerDuty's shape rather than aiohttp's text page.
            response = ApiError(exc.status, exc.reason, 2100 if exc.status == 404 else 2001).response()
        if not is_events:
            response.headers["ratelimit-limit"] = str(RATE_LIMIT)
            response.headers["ratelimit-remaining"] = str(RATE_LIMIT - 1)
            response.headers["ratelimit-reset"] = "60"
        response.headers["x-request-id"] = uuid.uuid4().hex
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=MultiDictProxy(MultiDict(request.query)),
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=body,
                status=response.status,
            )
        )
        await self._notify()
        return response

    def _check_rest_headers(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        prefix = "Token token="
        if not auth.startswith(prefix) or auth[len(prefix) :] not in self.api_tokens:
            raise ApiError(401, "Unauthorized", 2006, ["Invalid or missing API token"])
        accept = request.headers.get("Accept", "").replace(" ", "")
        if ACCEPT_V2 not in accept.split(","):
            raise ApiError(406, "Not Acceptable", 2001, [f"Accept header must be {ACCEPT_V2}"])

    def _injected_failure(self, request: web.Request) -> None:
        for i, (status, path) in enumerate(self._failures):
            if path is None or path == request.path:
                del self._failures[i]
                if status == 429:
                    raise ApiError(429, "Rate Limit Exceeded", 2020, ["Too many requests"])
                raise ApiError(status, "Internal Server Error" if status >= 500 else "Error", 3001)
