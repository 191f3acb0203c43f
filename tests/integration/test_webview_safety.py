"""The sandbox web view answers only its own page on a loopback name (DNS rebinding, CSRF).

A rebinding page (`http://evil.example:<port>` resolving to 127.0.0.1) is same-origin with itself
in the browser, so only the `Host` header gives it away; a cross-site form or fetch is given away
by its `Origin` or `Referer`. Each refusal is checked for its reason and for the absence of every
side effect: nothing reaches the bot, no alert is fired, the sandbox Slack sees no call. The
positive controls go through the same requests with this page's headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.slack import DEFAULT_USER, SlackSandbox
from sandbox.webview import DemoAlert, WebView

pytestmark = pytest.mark.timeout(60)

SECRET = "webview-safety-signing-secret"


@dataclass
class Bot:
    """Stands in for the bot's /slack/events: records what the web view sends it."""

    url: str = ""
    received: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Rig:
    view: WebView
    bot: Bot
    slack: SlackSandbox
    fired: list[tuple[int, bool]]
    http: aiohttp.ClientSession

    @property
    def port(self) -> int:
        return int(self.view.url.rsplit(":", 1)[1])

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, json: Any = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.request(method, self.view.url + path, headers=headers, json=json) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body

    def page(self, host: str = "127.0.0.1") -> dict[str, str]:
        """The headers a browser on this page sends with a fetch POST."""
        return {"Host": f"{host}:{self.port}", "Origin": f"http://{host}:{self.port}"}

    def command(self) -> dict[str, str]:
        """`/incident help` typed by the default user in the incident channel."""
        channel = self.slack.incident_channel
        assert channel is not None
        return {"text": "/incident help", "user_id": DEFAULT_USER, "channel_id": channel.id}

    def untouched(self, slack_calls: int) -> None:
        assert self.bot.received == [], "the request reached the bot"
        assert self.fired == [], "an alert was fired"
        assert len(self.slack.calls) == slack_calls, "the sandbox Slack saw a call"


@pytest.fixture
async def rig(slack: SlackSandbox, http: aiohttp.ClientSession) -> AsyncIterator[Rig]:
    bot = Bot()

    async def slack_events(request: web.Request) -> web.Response:
        bot.received.append({k: str(v) for k, v in (await request.post()).items()})
        return web.json_response({"response_type": "ephemeral", "text": "ok"})

    app = web.Application()
    app.router.add_post("/slack/events", slack_events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bot.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    fired: list[tuple[int, bool]] = []

    async def fire(index: int, resolve: bool) -> int:
        fired.append((index, resolve))
        return 200

    view = WebView(slack, None, bot.url, SECRET, fire, [DemoAlert("DemoDown", "demo", "demo is down")])
    await view.start(0)
    try:
        yield Rig(view, bot, slack, fired, http)
    finally:
        await view.stop()
        await runner.cleanup()


async def test_a_rebinding_host_is_refused(rig: Rig) -> None:
    calls = len(rig.slack.calls)
    for path in ("/", "/api/state", "/files/F1", "/static/app.js"):
        status, body = await rig.request("GET", path, headers={"Host": "evil.example"})
        assert status == 403, path
        assert "Host 'evil.example' refused" in body["error"]
        assert f"http://127.0.0.1:{rig.port}" in body["error"]
    # The rebinding page posts to itself: its Origin matches its Host, and both are foreign.
    evil = {"Host": f"evil.example:{rig.port}", "Origin": f"http://evil.example:{rig.port}"}
    status, body = await rig.request("POST", "/api/alerts/0/fire", headers=evil, json={})
    assert status == 403 and f"Host 'evil.example:{rig.port}' refused" in body["error"]
    # Loopback on another port is another origin.
    status, _ = await rig.request("GET", "/api/state", headers={"Host": f"127.0.0.1:{rig.port + 1}"})
    assert status == 403
    rig.untouched(calls)


async def test_loopback_hosts_are_served(rig: Rig) -> None:
    for host in ("127.0.0.1", "localhost", "[::1]", "LOCALHOST"):
        status, body = await rig.request("GET", "/api/state", headers={"Host": f"{host}:{rig.port}"})
        assert status == 200, host
        assert body["alerts"] == [
            {"index": 0, "name": "DemoDown", "system": "demo", "summary": "demo is down"}
        ]
    status, _ = await rig.request("GET", "/api/state")  # the client's own Host: 127.0.0.1:<port>
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "needs an Origin or Referer of this page"),
        ({"Origin": "http://evil.example"}, "Origin 'http://evil.example' is not http://127.0.0.1:"),
        ({"Origin": "null"}, "Origin 'null'"),
        ({"Referer": "http://evil.example/attack.html"}, "Referer 'http://evil.example'"),
        ({"Origin": "https://127.0.0.1:{port}"}, "is not http://127.0.0.1:"),
        ({"Origin": "http://localhost:{port}"}, "is not http://127.0.0.1:"),
    ],
)
async def test_a_state_change_from_another_origin_is_refused(
    rig: Rig, headers: dict[str, str], reason: str
) -> None:
    calls = len(rig.slack.calls)
    sent = {"Host": f"127.0.0.1:{rig.port}"} | {k: v.format(port=rig.port) for k, v in headers.items()}
    for path, body in (
        ("/api/alerts/0/fire", {}),
        ("/api/command", rig.command()),
        ("/api/click", {"action_id": "x"}),
    ):
        status, answer = await rig.request("POST", path, headers=sent, json=body)
        assert status == 403, (path, answer)
        assert reason in answer["error"], answer
    rig.untouched(calls)


async def test_a_state_change_from_this_page_goes_through(rig: Rig) -> None:
    status, body = await rig.request("POST", "/api/alerts/0/fire", headers=rig.page(), json={})
    assert (status, body) == (200, {"status": 200})
    assert rig.fired == [(0, False)]

    # Without an Origin, the Referer of this page will do; the command reaches the bot, signed.
    referer = {"Host": f"localhost:{rig.port}", "Referer": f"http://localhost:{rig.port}/#C1"}
    status, body = await rig.request("POST", "/api/command", headers=referer, json=rig.command())
    assert status == 200 and body["status"] == 200, body
    [delivered] = rig.bot.received
    assert delivered["command"] == "/incident" and delivered["text"] == "help"

    # Still JSON only, from this page too.
    async with rig.http.post(
        rig.view.url + "/api/alerts/0/resolve",
        data="x=1",
        headers=rig.page() | {"Content-Type": "text/plain"},
    ) as resp:
        assert resp.status == 415
    assert rig.fired == [(0, False)]
