"""Reading request bodies at the edge: within a size limit, a time limit, and (for requests not
yet authenticated) a bound on how many are read at once.

Slack and PagerDuty sign the body, so their requests can only be authenticated after it is
read: without a bound, every connection could make the bot buffer a body before being refused.
The bound is checked without waiting, so a flood is answered 503 at once instead of queueing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

RETRY_AFTER_S = 1


class Refused(Exception):
    """A request refused at the edge: the HTTP status, a reason for the caller, and a short
    label for the rejection metric."""

    def __init__(
        self, status: int, reason: str, label: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.label = label
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.json_response(
            {"status": "error", "error": self.reason}, status=self.status, headers=self.headers
        )


class BodyReader:
    """Reads one route's request bodies: at most ``max_bytes`` (refused from Content-Length
    before anything is read, and while reading when the body is chunked), within
    ``timeout_s``, and at most ``max_concurrent`` at a time (None: no bound)."""

    def __init__(self, max_bytes: int, timeout_s: float, max_concurrent: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_concurrent = max_concurrent
        self._reading = 0

    @property
    def reading(self) -> int:
        return self._reading

    async def read(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_bytes:
            raise self._too_large()
        if self.max_concurrent is not None and self._reading >= self.max_concurrent:
            raise Refused(
                503, "too many requests in progress, retry later", "busy", {"Retry-After": str(RETRY_AFTER_S)}
            )
        self._reading += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._read(request)
        except TimeoutError:
            raise Refused(408, f"request body not received within {self.timeout_s:g} s", "timeout") from None
        except (RequestPayloadError, ConnectionError):
            raise Refused(400, "request body could not be read", "unreadable") from None
        finally:
            self._reading -= 1

    async def _read(self, request: web.Request) -> bytes:
        body = bytearray()
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > self.max_bytes:
                raise self._too_large()
        return bytes(body)

    def _too_large(self) -> Refused:
        return Refused(413, f"body larger than {self.max_bytes} bytes", "too_large")
