"""A strict fake Slack that the real ``slack_sdk`` clients and a real Bolt app talk to.

``SlackSandbox`` is an aiohttp server on 127.0.0.1 that speaks the Slack Web API
(``POST /api/<method>``) with Slack's argument handling (query string, form body and JSON body
are merged), Slack's errors, Block Kit validation, per-method rate limits with HTTP 429 and
``Retry-After``, the ``files_upload_v2`` three-step flow, ``response_url`` endpoints and a
workspace model (users, user groups, channels, messages, files, views).

``SlackDriver`` plays Slack's side towards a bot: it signs and sends slash commands,
``block_actions`` (built from a message stored in the sandbox), ``view_submission`` payloads and
Events API envelopes to the bot's ``/slack/events`` URL.

Socket Mode (protocols C.8): ``apps.connections.open`` takes the app-level token (``xapp-``) and
returns a one-time ``ws://127.0.0.1:PORT/socket/<ticket>`` URL; the sandbox serves that WebSocket,
greets with ``hello``, answers pings, and ``send_envelope`` delivers ``slash_commands`` /
``interactive`` / ``events_api`` envelopes and waits (bounded, 3 s like Slack) for the ack with the
same ``envelope_id``. ``SocketModeDriver`` is ``SlackDriver``'s counterpart over that socket: the same
commands, clicks, view submissions and events, built the same way, delivered as envelopes.
Envelopes, acks and connections are recorded (``socket_envelopes``, ``socket_acks``,
``socket_connections``) and wake ``wait_for``. ``stop()`` sends ``disconnect`` before closing.

Everything lives on the instances; there is no module-level mutable state.

Rate limits (see protocols C.4) are token buckets per method per workspace. A tiered method's
bucket holds one minute's allowance (Tier 1: 1, Tier 2: 20, Tier 3: 50, Tier 4: 100) and refills
at that rate, so a burst of a full minute's allowance is accepted and then calls are spread out.
``chat.postMessage`` has one bucket per channel refilling at 1 message/s with a burst of
``postmessage_burst`` (3 by default). ``rate_scale`` multiplies every refill rate (``10`` means
time runs ten times faster); burst sizes are not scaled.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.slack.chat import ChatApi
from sandbox.slack.conversations import ConversationsApi
from sandbox.slack.files import FilesApi
from sandbox.slack.limits import APP_LEVEL_METHODS, METHOD_TIERS, TIER_PER_MINUTE
from sandbox.slack.models import Bucket, RecordedCall
from sandbox.slack.responses import ResponseUrls
from sandbox.slack.socket_mode import SocketMode
from sandbox.slack.users import UsersApi
from sandbox.slack.views import ViewsApi
from sandbox.slack.wire import SlackError

JSON = dict[str, Any]

_Handler = Callable[[JSON], JSON]


class SlackSandbox(UsersApi, ConversationsApi, ChatApi, ViewsApi, FilesApi, ResponseUrls, SocketMode):
    """A strict, in-process fake Slack workspace served over HTTP on 127.0.0.1."""

    @functools.cached_property
    def _methods(self) -> dict[str, _Handler]:
        """Web API method name -> handler (each handler lives with its API family)."""
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "team.info": self._team_info,
            "conversations.archive": self._conversations_archive,
            "conversations.create": self._conversations_create,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "conversations.invite": self._conversations_invite,
            "conversations.join": self._conversations_join,
            "conversations.list": self._conversations_list,
            "conversations.members": self._conversations_members,
            "conversations.open": self._conversations_open,
            "conversations.rename": self._conversations_rename,
            "conversations.replies": self._conversations_replies,
            "conversations.setPurpose": self._conversations_set_purpose,
            "conversations.setTopic": self._conversations_set_topic,
            "conversations.unarchive": self._conversations_unarchive,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.info": self._files_info,
            "reactions.add": self._reactions_add,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.lookupByEmail": self._users_lookup_by_email,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("POST", "/api/{method}", self._handle_api)
        app.router.add_route("GET", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{key}", self._handle_upload)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        app.router.add_get("/files/{file_id}/{name}", self._handle_file_download)
        app.router.add_get("/snapshot", self._handle_snapshot)
        app.router.add_get("/socket/{ticket}", self._handle_socket)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound_port = int(address[1])
                break
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self._base_url = f"http://{shown_host}:{bound_port}"

    async def stop(self) -> None:
        if self._runner is not None:
            self._stopping = True
            try:
                await self.disconnect_sockets("link_disabled", close=True)
                await self._runner.cleanup()
            finally:
                self._runner = None
                self._stopping = False

    async def __aenter__(self) -> SlackSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the Web API: arguments, tokens, rate limits, dispatch --------------------------------

    async def _read_args(self, request: web.Request) -> tuple[JSON, str | None]:
        """Merge query, form and JSON arguments; return (args, token from query/form)."""
        args: JSON = {k: request.query.getall(k)[-1] for k in request.query}
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key in form:
                    value = form.getall(key)[-1]
                    if isinstance(value, str):
                        args[key] = value
            elif ctype == "application/json":
                raw = await request.read()
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except ValueError as exc:
                        raise SlackError("invalid_json") from exc
                    if not isinstance(body, dict):
                        raise SlackError("invalid_json")
                    body.pop("token", None)  # Slack wants the Authorization header with JSON bodies
                    args.update(body)
        token = args.pop("token", None)
        return args, token if isinstance(token, str) else None

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: JSON = {}
        try:
            args, arg_token = await self._read_args(request)
            auth = request.headers.get("Authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else arg_token
            status, body, headers = self._dispatch(method, args, token)
        except SlackError as fail:
            status, body, headers = 200, {"ok": False, "error": fail.error}, {}
        self.calls.append(
            RecordedCall(
                method=method,
                args=args,
                time=time.time(),
                status=status,
                ok=bool(body.get("ok")),
                error=body.get("error"),
                response=body,
                http_method=request.method,
            )
        )
        self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _dispatch(self, method: str, args: JSON, token: str | None) -> tuple[int, JSON, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        app_level = method in APP_LEVEL_METHODS
        if self.app_token is not None and token == self.app_token:
            if not app_level:
                return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
        elif token == self.bot_token:
            if app_level:
                return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
        else:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        retry_after = self._rate_check(method, args)
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        try:
            result = handler(args)
        except SlackError as fail:
            body: JSON = {"ok": False, "error": fail.error, **fail.extra}
            if fail.messages:
                body["response_metadata"] = {"messages": fail.messages}
            return 200, body, {}
        return 200, {"ok": True, **result}, {"X-OAuth-Scopes": "chat:write,channels:manage,files:write"}

    def _rate_check(self, method: str, args: JSON) -> int | None:
        forced = self._forced.get(method, 0)
        if forced > 0:
            self._forced[method] = forced - 1
            return 1
        if not self.rate_limits:
            return None
        if method == "chat.postMessage":
            raw = args.get("channel")
            key = str(raw) if raw is not None else ""
            found = self._lookup_post_channel(key)
            key = found.id if found is not None else key
            capacity, per_second = float(self.postmessage_burst), 1.0
        else:
            tier = METHOD_TIERS.get(method, 3)
            key = ""
            per_minute = TIER_PER_MINUTE[tier]
            capacity, per_second = float(per_minute), per_minute / 60.0
        per_second *= self.rate_scale
        now = time.monotonic()
        bucket = self._buckets.get((method, key))
        if bucket is None:
            bucket = Bucket(capacity=capacity, per_second=per_second, tokens=capacity, stamp=now)
            self._buckets[(method, key)] = bucket
        wait = bucket.take(now)
        if wait <= 0:
            return None
        return max(1, math.ceil(wait))

    async def _handle_snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())
