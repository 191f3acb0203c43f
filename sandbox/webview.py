"""The sandbox web view: the sandbox Slack workspace and cluster in a browser, live.

``WebView`` is an aiohttp app bound to 127.0.0.1 that serves one static page
(``webview_static/``) and a small JSON API over the in-process sandboxes:

- ``GET /api/state``: the whole picture (users, channels with their messages as Block Kit,
  ephemerals, files, the cluster's deployments, the demo alerts) as JSON;
- ``GET /api/events``: the same picture as Server-Sent Events, sent again on every change of the
  sandbox Slack or the sandbox cluster (woken by their ``wait_for``, no polling);
- ``GET /files/{id}``: the bytes of an uploaded file (graphs), straight from the sandbox;
- ``POST /api/click``: a button clicked as a chosen user, sent to the bot by ``SlackDriver.click``
  (a signed ``block_actions``, exactly as Slack sends it);
- ``POST /api/command``: a slash command typed as a chosen user in a channel
  (``SlackDriver.slash_command``);
- ``POST /api/alerts/{index}/{fire|resolve}``: fire or resolve a demo alert through the
  runner's callback.

The page renders every text with ``textContent``; nothing from a message reaches ``innerHTML``.

The web view drives the bot as any sandbox user, so it answers only its own page: every request
must name a loopback ``Host`` with the bound port (127.0.0.1, localhost or [::1]), which a
DNS-rebinding page (a hostile name that resolves to 127.0.0.1) cannot; a state-changing request
must also carry an ``Origin`` (or, without one, a ``Referer``) of that same loopback origin, and
be JSON. Anything else is a 403 (415 for another content type) that says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from sandbox.kubernetes import KubeSandbox
from sandbox.pagerduty import PagerDutySandbox
from sandbox.slack import DEFAULT_USER, SlackDriver, SlackSandbox

__all__ = ["LOOPBACK_HOSTS", "DemoAlert", "FireCallback", "WebView"]

JSON = dict[str, Any]
STATIC_DIR = Path(__file__).parent / "webview_static"
REVISION = "deployment.kubernetes.io/revision"
HEARTBEAT_SECONDS = 15.0
WATCH_SECONDS = 30.0
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: ``fire(index, resolve)`` fires (or resolves) demo alert ``index``; returns the bot's HTTP status.
FireCallback = Callable[[int, bool], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class DemoAlert:
    """A sample alert the page offers to fire and resolve."""

    name: str
    system: str
    summary: str


class WebView:
    """Serves the sandbox workspace and cluster on 127.0.0.1 and drives the bot as Slack would."""

    def __init__(
        self,
        slack: SlackSandbox,
        kube: KubeSandbox | None,
        bot_url: str,
        signing_secret: str,
        fire: FireCallback | None = None,
        alerts: Sequence[DemoAlert] = (),
        pagerduty: PagerDutySandbox | None = None,
    ) -> None:
        self.slack = slack
        self.kube = kube
        self.pagerduty = pagerduty
        self.bot_url = bot_url.rstrip("/")
        self.signing_secret = signing_secret
        self.fire = fire
        self.alerts = list(alerts)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._driver: SlackDriver | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, port: int = 8090) -> int:
        """Serve on 127.0.0.1:``port`` (0: any free port); return the bound port."""
        self._closing = asyncio.Event()
        self._session = aiohttp.ClientSession()
        self._driver = SlackDriver(
            self.slack, self.bot_url + "/slack/events", self.signing_secret, self._session
        )
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/files/{file_id}", self._file)
        app.router.add_post("/api/click", self._click)
        app.router.add_post("/api/command", self._command)
        app.router.add_post("/api/alerts/{index}/{verb}", self._alert)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        self._watchers = [asyncio.create_task(self._watch_slack())]
        if self.kube is not None:
            self._watchers.append(asyncio.create_task(self._watch_kube()))
        if self.pagerduty is not None:
            self._watchers.append(asyncio.create_task(self._watch_pagerduty()))
        return self._port

    async def stop(self) -> None:
        self._closing.set()
        self._changed.set()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._driver = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("WebView is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- change notification ------------------------------------------------------------------

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _slack_signature(self) -> tuple[int, ...]:
        sb = self.slack
        return (
            len(sb.calls),
            len(sb.responses),
            len(sb.channels),
            len(sb.ephemerals),
            len(sb.files),
            sum(1 for f in sb.files.values() if f.completed),
            sum(len(c.messages) for c in sb.channels.values()),
            sum(len(c.members) for c in sb.channels.values()),
        )

    async def _watch_slack(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await self.slack.wait_for(self._slack_changed(self._slack_signature()), timeout=WATCH_SECONDS)
                self._bump()

    def _slack_changed(self, seen: tuple[int, ...]) -> Callable[[SlackSandbox], bool]:
        return lambda _slack: self._slack_signature() != seen

    async def _watch_kube(self) -> None:
        kube = self.kube
        assert kube is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await kube.wait_for(self._kube_changed(self.deployments()), timeout=WATCH_SECONDS)
                self._bump()

    def _kube_changed(self, seen: list[JSON]) -> Callable[[], bool]:
        return lambda: self.deployments() != seen

    async def _watch_pagerduty(self) -> None:
        pagerduty = self.pagerduty
        assert pagerduty is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await pagerduty.wait_for(
                    self._pagerduty_changed(self.pagerduty_incidents()), timeout=WATCH_SECONDS
                )
                self._bump()

    def _pagerduty_changed(self, seen: list[JSON]) -> Callable[[], bool]:
        return lambda: self.pagerduty_incidents() != seen

    # -- the picture --------------------------------------------------------------------------

    def deployments(self) -> list[JSON]:
        """The cluster's deployments as the page's panel shows them."""
        if self.kube is None:
            return []
        rows: list[JSON] = []
        for dep in self.kube.objects("deployments"):
            meta = dep.get("metadata") or {}
            spec = dep.get("spec") or {}
            status = dep.get("status") or {}
            containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
            maintenance: str | None = None
            for container in containers:
                for env in container.get("env") or []:
                    if env.get("name") == "MAINTENANCE_MODE" and "value" in env:
                        maintenance = str(env["value"])
            annotations = meta.get("annotations") or {}
            restarted = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
            rows.append(
                {
                    "namespace": str(meta.get("namespace", "")),
                    "name": str(meta.get("name", "")),
                    "replicas": int(spec.get("replicas", 1) or 0),
                    "ready": int(status.get("readyReplicas", 0) or 0),
                    "updated": int(status.get("updatedReplicas", 0) or 0),
                    "revision": str(annotations.get(REVISION, "")),
                    "images": [str(c.get("image", "")) for c in containers],
                    "maintenance_mode": maintenance,
                    "restarted_at": restarted.get("kubectl.kubernetes.io/restartedAt"),
                }
            )
        return rows

    def pagerduty_incidents(self) -> list[JSON]:
        """The PagerDuty side of the demo: each incident as the account shows it, newest first
        (what the bot's acknowledgements, resolutions and notes did there)."""
        pd = self.pagerduty
        if pd is None:
            return []

        def name(user_id: str | None) -> str:
            user = pd.users.get(user_id or "")
            return user.name if user is not None else (user_id or "")

        rows: list[JSON] = []
        for incident in sorted(pd.incidents.values(), key=lambda i: i.number, reverse=True):
            service = pd.services.get(incident.service_id)
            rows.append(
                {
                    "number": incident.number,
                    "title": incident.title,
                    "status": incident.status,
                    "urgency": incident.urgency,
                    "service": service.name if service is not None else incident.service_id,
                    "assignees": [name(u) for u in incident.assignee_ids],
                    "notes": [{"by": name(n.user_id), "content": n.content} for n in incident.notes[-3:]],
                    "note_count": len(incident.notes),
                }
            )
        return rows

    def state(self) -> JSON:
        sb = self.slack
        users = [
            {"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot}
            for u in sb.users.values()
            if not u.deleted
        ]
        channels: list[JSON] = []
        for channel in sb.channels.values():
            if channel.is_im:
                other = next((m for m in channel.members if m != sb.bot_user_id), "")
                other_user = sb.users.get(other)
                name = f"@{other_user.name if other_user else other}"
            else:
                name = channel.name
            channels.append(
                {
                    "id": channel.id,
                    "name": name,
                    "is_im": channel.is_im,
                    "is_private": channel.is_private,
                    "is_archived": channel.is_archived,
                    "topic": channel.topic,
                    "members": list(channel.members),
                    "messages": [
                        {
                            "ts": m.ts,
                            "user": m.user,
                            "text": m.text,
                            "blocks": m.blocks,
                            "attachments": m.attachments,
                            "thread_ts": m.thread_ts,
                            "subtype": m.subtype,
                            "bot": m.bot_id is not None,
                            "edited": m.edited is not None,
                            "files": list(m.files),
                            "reactions": {k: list(v) for k, v in m.reactions.items()},
                        }
                        for m in channel.messages
                    ],
                }
            )
        files = {
            f.id: {
                "name": f.name,
                "title": f.title,
                "mimetype": f.mimetype,
                "alt": f.alt_txt,
                "url": f"/files/{f.id}",
            }
            for f in sb.files.values()
            if f.completed and f.data is not None
        }
        ephemerals = [
            {
                "channel": e.channel,
                "user": e.user,
                "ts": e.ts,
                "text": e.text,
                "blocks": e.blocks,
                "thread_ts": e.thread_ts,
                "source": e.source,
            }
            for e in sb.ephemerals
        ]
        failed = [
            {"user": r.user_id, "channel": r.channel_id, "status": r.status, "error": r.error, "time": r.time}
            for r in sb.responses
            if not r.ok
        ]
        return {
            "team": {"id": sb.team_id, "name": sb.team_name},
            "bot_user_id": sb.bot_user_id,
            "incident_channel": sb.incident_channel.id if sb.incident_channel else None,
            "slack_base_url": sb.base_url,
            "users": users,
            "usergroups": [{"id": g.id, "handle": g.handle} for g in sb.usergroups.values()],
            "channels": channels,
            "files": files,
            "ephemerals": ephemerals,
            "failed_responses": failed[-20:],
            "deployments": self.deployments(),
            "pagerduty": self.pagerduty_incidents(),
            "alerts": [
                {"index": i, "name": a.name, "system": a.system, "summary": a.summary}
                for i, a in enumerate(self.alerts)
            ],
        }

    # -- HTTP ---------------------------------------------------------------------------------

    def _allowed_hosts(self) -> frozenset[str]:
        """The ``Host`` values of this page: a loopback name with the bound port (bare on port 80)."""
        port = self._port
        hosts = {f"{name}:{port}" for name in LOOPBACK_HOSTS}
        if port == 80:
            hosts.update(LOOPBACK_HOSTS)
        return frozenset(hosts)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why this request is not from this page (see the module docstring), or None."""
        host = request.headers.get("Host", "").lower()
        if host not in self._allowed_hosts():
            return _error(
                403,
                f"Host {host or '(none)'!r} refused: the sandbox web view answers only "
                f"http://127.0.0.1:{self._port}, http://localhost:{self._port} or http://[::1]:{self._port}",
            )
        if request.method in _SAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        source = "Origin"
        if origin is None:
            referer = urlsplit(request.headers.get("Referer", ""))
            origin = f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None
            source = "Referer"
        if origin is None:
            return _error(403, "a state-changing request needs an Origin or Referer of this page")
        if origin.lower() != f"http://{host}":
            return _error(403, f"cross-origin request refused ({source} {origin!r} is not http://{host})")
        if request.content_type != "application/json":
            return _error(415, "send application/json")
        return None

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Only this page, on a loopback name, may read it or act through it."""
        refusal = self._refusal(request)
        if refusal is not None:
            refusal.headers["Cache-Control"] = "no-store"
            return refusal
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return _static_file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return _static_file(request.match_info["name"])

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        last = ""
        try:
            while not self._closing.is_set():
                changed = self._changed
                body = json.dumps(self.state(), separators=(",", ":"))
                if body != last:
                    await response.write(f"event: state\ndata: {body}\n\n".encode())
                    last = body
                try:
                    await asyncio.wait_for(changed.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response

    async def _file(self, request: web.Request) -> web.Response:
        f = self.slack.files.get(request.match_info["file_id"])
        if f is None or f.data is None:
            return _error(404, "file not found")
        return web.Response(body=f.data, content_type=f.mimetype)

    async def _body(self, request: web.Request) -> JSON:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="invalid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return body

    def _user_arg(self, body: JSON) -> str:
        user = body.get("user_id") or DEFAULT_USER
        if not isinstance(user, str) or user not in self.slack.users or self.slack.users[user].is_bot:
            raise web.HTTPBadRequest(text=f"unknown user {user!r}")
        return user

    def _channel_arg(self, body: JSON, *, required: bool) -> str | None:
        channel = body.get("channel_id")
        if channel is None and not required:
            return None
        if not isinstance(channel, str) or channel not in self.slack.channels:
            raise web.HTTPBadRequest(text=f"unknown channel {channel!r}")
        return channel

    async def _click(self, request: web.Request) -> web.Response:
        assert self._driver is not None
        body = await self._body(request)
        action_id = body.get("action_id")
        if not isinstance(action_id, str) or not action_id:
            return _error(400, "action_id is required")
        message_ts = body.get("message_ts")
        value = body.get("value")
        try:
            result = await self._driver.click(
                action_id,
                user_id=self._user_arg(body),
                channel_id=self._channel_arg(body, required=False),
                message_ts=message_ts if isinstance(message_ts, str) else None,
                value=value if isinstance(value, str) else None,
            )
        except LookupError as exc:
            return _error(404, str(exc))
        except aiohttp.ClientError as exc:
            return _error(502, f"the bot did not answer: {exc}")
        return web.json_response({"status": result.status, "body": result.body[:2000]})

    async def _command(self, request: web.Request) -> web.Response:
        assert self._driver is not None
        body = await self._body(request)
        line = body.get("text")
        if not isinstance(line, str) or not line.strip().startswith("/"):
            return _error(400, "type a slash command, e.g. /incident help")
        command, _, text = line.strip().partition(" ")
        try:
            result = await self._driver.slash_command(
                command,
                text.strip(),
                user_id=self._user_arg(body),
                channel_id=self._channel_arg(body, required=True),
            )
        except LookupError as exc:
            return _error(404, str(exc))
        except aiohttp.ClientError as exc:
            return _error(502, f"the bot did not answer: {exc}")
        return web.json_response({"status": result.status, "body": result.body[:2000]})

    async def _alert(self, request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        try:
            index = int(request.match_info["index"])
        except ValueError:
            return _error(404, "no such alert")
        if verb not in ("fire", "resolve") or not 0 <= index < len(self.alerts):
            return _error(404, "no such alert")
        if self.fire is None:
            return _error(501, "this web view cannot fire alerts")
        try:
            status = await self.fire(index, verb == "resolve")
        except aiohttp.ClientError as exc:
            return _error(502, f"the bot did not answer: {exc}")
        return web.json_response({"status": status})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _static_file(name: str) -> web.Response:
    path = STATIC_DIR / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return _error(404, "not found")
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8")
