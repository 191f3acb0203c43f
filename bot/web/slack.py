"""The HTTP edge of Slack (`/slack/events`), in front of Bolt.

Bolt verifies signatures too, but only after the body is read, and it answers a non-numeric
timestamp with a 500. Here, in order: the signature headers alone (401 without reading the
body), the body within its limit, time and concurrency bound, the HMAC over it, then the
replay check: a request (its timestamp and signature) is handled once across replicas within
the window its signature is valid for. Slack retries an Events API delivery with the same
signature (``X-Slack-Retry-Num``); such a retry of a request already taken is answered 200
without running it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from aiohttp import web
from redis.exceptions import RedisError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.obs.metrics import Metrics
from bot.sources.slack import (
    MAX_SKEW_S,
    RETRY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    header_problem,
    signature_ok,
)
from bot.store.coordination import Coordination
from bot.web.bodies import RETRY_AFTER_S, BodyReader, Refused

# A signature is valid while its timestamp is within MAX_SKEW_S of now, on either side.
REPLAY_WINDOW_S = 2 * MAX_SKEW_S


class SlackEdge:
    def __init__(
        self,
        bolt: AsyncApp,
        signing_secret: str,
        coord: Coordination,
        metrics: Metrics,
        body: BodyReader,
        wall_clock: Callable[[], float],
    ) -> None:
        self.bolt = bolt
        self._secret = signing_secret
        self.coord = coord
        self._metrics = metrics
        self.body = body
        # Slack's timestamps are wall-clock seconds (Bolt compares them with time.time too).
        self.wall_clock = wall_clock

    async def events(self, request: web.Request) -> web.Response:
        try:
            return await self._events(request)
        except Refused as refused:
            self._metrics.webhooks_rejected.labels("slack", refused.label).inc()
            return refused.response()

    async def _events(self, request: web.Request) -> web.Response:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        problem = header_problem(signature, timestamp, self.wall_clock())
        if problem is not None:
            raise Refused(401, problem, "unauthorized")
        raw = await self.body.read(request)
        if not signature_ok(self._secret, timestamp, raw, signature):
            raise Refused(401, f"invalid {SIGNATURE_HEADER}", "unauthorized")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "body is not UTF-8", "invalid") from None
        key = f"slack:{timestamp}:{signature.lower()}"
        if not await self._first_use(key):
            if request.headers.get(RETRY_HEADER):
                return web.Response(status=200)
            raise Refused(401, "request already received: replays are refused", "replay")
        try:
            bolt_request = AsyncBoltRequest(
                body=text, query=request.query_string, headers=dict(request.headers)
            )
            return await to_aiohttp_response(await self.bolt.async_dispatch(bolt_request))
        except Exception:
            with contextlib.suppress(RedisError, OSError):
                await self.coord.forget_use(key)  # not handled: Slack's retry must be
            raise

    async def _first_use(self, key: str) -> bool:
        try:
            return await self.coord.first_use(key, REPLAY_WINDOW_S)
        except (RedisError, OSError) as exc:
            # Fail closed: without the replay check the request is not run.
            raise Refused(
                503,
                "cannot check for replayed requests now, retry later",
                "unavailable",
                {"Retry-After": str(RETRY_AFTER_S)},
            ) from exc
