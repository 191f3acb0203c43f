"""A small fault-injecting HTTP proxy for the fault tests, on 127.0.0.1.

The bot talks to it as if it were Slack's Web API; it forwards to the sandbox Slack unless a
rule says otherwise for the next calls of a method:

- `refuse`: answer 503 without forwarding (the call was not applied);
- `applied_then_503`: forward (Slack applies it), then answer 503 instead of Slack's answer;
- `reset_after_write`: forward, then drop the connection without an answer;
- `slow`: wait `delay_s` seconds, then forward and answer (a slow Slack);
- `applied_then_hang`: forward (Slack applies it), then hold the answer `delay_s` seconds
  (longer than the client's timeout: the client gives up on a call that was applied).

A rule can also apply only to calls whose body contains a given text (`fail_matching`).

Every call is recorded with what the proxy did, so a test can assert exactly what happened.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class Fault(StrEnum):
    REFUSE = "refuse"
    APPLIED_THEN_503 = "applied_then_503"
    RESET_AFTER_WRITE = "reset_after_write"
    SLOW = "slow"
    APPLIED_THEN_HANG = "applied_then_hang"


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    fault: Fault | None
    forwarded: bool


@dataclass
class FaultProxy:
    upstream: str  # e.g. the sandbox Slack's api_url, ending in /api/
    seen: list[Seen] = field(default_factory=list)
    _rules: dict[str, deque[Fault | None]] = field(default_factory=lambda: defaultdict(deque))
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    port: int = 0
    delay_s: float = 3.0
    _matching: list[tuple[str, bytes, Fault]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def fail_next(self, method: str, fault: Fault, times: int = 1) -> None:
        self._rules[method].extend([fault] * times)

    def fail_after(self, method: str, passes: int, fault: Fault) -> None:
        """Let `passes` calls of `method` through, then inject `fault` once."""
        self._rules[method].extend([None] * passes + [fault])

    def fail_matching(self, method: str, needle: str, fault: Fault) -> None:
        """Inject `fault` once, into the first call of `method` whose body contains `needle`."""
        self._matching.append((method, needle.encode(), fault))

    def _matching_fault(self, method: str, body: bytes) -> Fault | None:
        for index, (wanted, needle, fault) in enumerate(self._matching):
            if wanted == method and needle in body:
                del self._matching[index]
                return fault
        return None

    def calls(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    async def wait_for_calls(self, method: str, count: int, timeout: float = 10.0) -> list[Seen]:
        async with asyncio.timeout(timeout):
            while len(self.calls(method)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.calls(method)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _record(self, method: str, fault: Fault | None, forwarded: bool) -> None:
        self.seen.append(Seen(method, fault, forwarded))
        self._changed.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        rules = self._rules.get(method)
        fault = rules.popleft() if rules else None
        body = await request.read()
        fault = self._matching_fault(method, body) or fault
        if fault is Fault.REFUSE:
            self._record(method, fault, forwarded=False)
            return web.Response(status=503, text="service unavailable (injected)")
        if fault is Fault.SLOW:
            await asyncio.sleep(self.delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        assert self._session is not None
        url = self.upstream.rstrip("/") + "/" + method
        async with self._session.request(
            request.method, url, params=request.query, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            status, upstream_headers = upstream.status, upstream.headers
        self._record(method, fault, forwarded=True)
        if fault is Fault.APPLIED_THEN_503:
            return web.Response(status=503, text="service unavailable (injected after the write)")
        if fault is Fault.APPLIED_THEN_HANG:
            await asyncio.sleep(self.delay_s)
            return web.Response(status=504, text="gateway timeout (injected after the write)")
        if fault is Fault.RESET_AFTER_WRITE:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("injected reset after the write")
        out = {k: v for k, v in upstream_headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=status, body=payload, headers=out)
