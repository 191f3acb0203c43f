"""The workspace state every part of the sandbox shares, with its setup helpers and lookups."""

from __future__ import annotations

import asyncio
import copy
import itertools
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Self, TypeVar, cast

from aiohttp import web

from sandbox.slack.blockkit import interactive_elements
from sandbox.slack.limits import DEFAULT_USER, ID_ALPHABET, SYSTEM_SUBTYPES
from sandbox.slack.models import (
    Bucket,
    Channel,
    EphemeralMessage,
    Message,
    RecordedCall,
    ResponsePost,
    ResponseUrl,
    SandboxFile,
    SocketConnection,
    SocketEnvelope,
    Trigger,
    User,
    Usergroup,
    View,
)
from sandbox.slack.wire import SlackError, channel_name_error, opt_str, req_str, shorten

T = TypeVar("T")
JSON = dict[str, Any]


class WorkspaceState:
    """The workspace (users, channels, messages, files, views) and the bookkeeping the Web API,
    the non-API routes and Socket Mode share; ``SlackSandbox`` serves it."""

    def __init__(
        self,
        *,
        rate_limits: bool = True,
        rate_scale: float = 1.0,
        postmessage_burst: int = 3,
        team_id: str = "T0SANDBOX",
        team_name: str = "Sandbox",
        team_domain: str = "sandbox",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        bot_name: str = "incidentbot",
        app_id: str = "A_INCIDENTBOT",
        bot_token: str = "xoxb-0000000001-0000000002-sandboxbottoken",
        app_token: str | None = "xapp-1-A_INCIDENTBOT-0000000003-sandboxapptoken",
        default_users: bool = True,
        default_channels: bool = True,
        incident_channel: str = "incidents",
        chat_write_public: bool = False,
        trigger_ttl: float = 3.0,
    ) -> None:
        """Build the workspace; call ``start()`` to serve it.

        Defaults: users U0ALICE / U0BOB / U0CAROL (``<name>@example.com``), user group S0SRE
        (``@sre-oncall``: alice, bob), ``#general`` (C0GENERAL, the bot is NOT a member) and
        ``#incidents`` (C0INCIDENTS, humans and the bot are members; also ``incident_channel``).
        ``chat_write_public`` models the ``chat:write.public`` scope. ``trigger_ttl`` is how long
        a ``trigger_id`` stays valid (Slack: about 3 s).
        """
        if rate_scale <= 0:
            raise ValueError("rate_scale must be positive")
        self.rate_limits = rate_limits
        self.rate_scale = rate_scale
        self.postmessage_burst = postmessage_burst
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.bot_token = bot_token
        self.app_token = app_token
        #: with the ``chat:write.public`` scope a bot may post to public channels it is not in
        self.chat_write_public = chat_write_public
        self.trigger_ttl = trigger_ttl

        self.users: dict[str, User] = {}
        self.usergroups: dict[str, Usergroup] = {}
        self.channels: dict[str, Channel] = {}
        self.files: dict[str, SandboxFile] = {}
        self.views: dict[str, View] = {}
        self.ephemerals: list[EphemeralMessage] = []
        self.deleted_messages: list[Message] = []
        self.responses: list[ResponsePost] = []
        self.calls: list[RecordedCall] = []

        self._ids = itertools.count(1)
        self._last_ts_us = 0
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._forced: dict[str, int] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._triggers: dict[str, Trigger] = {}
        self._view_stacks: dict[str, list[str]] = {}
        self._uploads: dict[str, str] = {}
        #: Socket Mode: connections (open and closed), envelopes sent, raw ack frames received
        self.socket_connections: list[SocketConnection] = []
        self.socket_envelopes: list[SocketEnvelope] = []
        self.socket_acks: list[JSON] = []
        self._socket_tickets: dict[str, float] = {}
        self._socket_pending: dict[str, asyncio.Future[None]] = {}
        self._socket_next = 0
        self._stopping = False
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url = ""
        self.users[bot_user_id] = User(
            id=bot_user_id, name=bot_name, real_name=bot_name, email=None, is_bot=True, bot_id=bot_id
        )
        self.incident_channel: Channel | None = None
        self._seed(
            default_users=default_users, default_channels=default_channels, incident_channel=incident_channel
        )

    def _seed(self, *, default_users: bool, default_channels: bool, incident_channel: str) -> None:
        """The default workspace (see ``__init__``)."""
        if default_users:
            self.add_user("U0ALICE", "alice", "Alice Anderson", "alice@example.com")
            self.add_user("U0BOB", "bob", "Bob Brown", "bob@example.com")
            self.add_user("U0CAROL", "carol", "Carol Chen", "carol@example.com")
            self.add_usergroup("S0SRE", "sre-oncall", ["U0ALICE", "U0BOB"], name="SRE on-call")
        humans = [u.id for u in self.users.values() if not u.is_bot]
        if default_channels:
            self.add_channel("general", channel_id="C0GENERAL", members=humans, bot_member=False)
            self.channels["C0GENERAL"].is_general = True
            self.incident_channel = self.add_channel(
                incident_channel, channel_id="C0INCIDENTS", members=humans, bot_member=True
            )

    # -- addresses ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("SlackSandbox is not started")
        return self._base_url

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # -- workspace setup ----------------------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, real_name: str | None = None, email: str | None = None
    ) -> User:
        if user_id in self.users:
            raise ValueError(f"user {user_id} exists")
        user = User(id=user_id, name=name, real_name=real_name or name, email=email)
        self.users[user_id] = user
        self._notify()
        return user

    def add_usergroup(
        self, usergroup_id: str, handle: str, members: Iterable[str], *, name: str | None = None
    ) -> Usergroup:
        member_ids = list(members)
        unknown = [m for m in member_ids if m not in self.users]
        if unknown:
            raise ValueError(f"unknown users {unknown}")
        group = Usergroup(id=usergroup_id, handle=handle, name=name or handle, users=member_ids)
        self.usergroups[usergroup_id] = group
        self._notify()
        return group

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        members: Iterable[str] = (),
        bot_member: bool = True,
        is_private: bool = False,
        topic: str = "",
        purpose: str = "",
    ) -> Channel:
        """Create a pre-existing channel (no API call, no rate limit, no join messages)."""
        problem = channel_name_error(name)
        if problem is not None:
            raise ValueError(f"channel name {name!r}: {problem}")
        channel_id = channel_id or self._new_id("G" if is_private else "C")
        if channel_id in self.channels:
            raise ValueError(f"channel {channel_id} exists")
        member_ids = [m for m in members if m != self.bot_user_id]
        for m in member_ids:
            if m not in self.users:
                raise ValueError(f"unknown user {m}")
        if bot_member:
            member_ids.append(self.bot_user_id)
        creator = member_ids[0] if member_ids else self.bot_user_id
        now = int(time.time())
        channel = Channel(
            id=channel_id,
            name=name,
            creator=creator,
            created=now,
            members=member_ids,
            topic=topic,
            purpose=purpose,
            is_private=is_private,
            topic_set_by=creator if topic else "",
            topic_set_at=now if topic else 0,
            purpose_set_by=creator if purpose else "",
            purpose_set_at=now if purpose else 0,
        )
        self.channels[channel_id] = channel
        self._notify()
        return channel

    def add_message(
        self,
        channel_id: str,
        text: str,
        *,
        user_id: str = DEFAULT_USER,
        blocks: list[JSON] | None = None,
        thread_ts: str | None = None,
    ) -> Message:
        """Store a message as if a human posted it (no API call, no event)."""
        channel = self._require_channel(channel_id)
        if user_id not in self.users:
            raise ValueError(f"unknown user {user_id}")
        msg = Message(
            channel=channel.id,
            ts=self._next_ts(),
            user=user_id,
            text=text,
            blocks=self._with_ids(blocks) if blocks is not None else None,
            thread_ts=thread_ts,
        )
        channel.messages.append(msg)
        self._notify()
        return msg

    def add_reaction(self, channel_id: str, ts: str, name: str, user_id: str) -> Message:
        channel = self._require_channel(channel_id)
        msg = channel.message(ts)
        if msg is None:
            raise LookupError(f"no message {ts} in {channel_id}")
        users = msg.reactions.setdefault(name, [])
        if user_id not in users:
            users.append(user_id)
        self._notify()
        return msg

    # -- test hooks and accessors -------------------------------------------------------------

    def force_rate_limit(self, method: str, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` answer HTTP 429 with ``Retry-After: 1``."""
        self._forced[method] = self._forced.get(method, 0) + times

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    def channel_by_name(self, name: str) -> Channel | None:
        name = name.removeprefix("#")
        for channel in self.channels.values():
            if channel.name == name and not channel.is_im:
                return channel
        return None

    def find_channel(self, prefix: str) -> Channel | None:
        """The first-created channel whose name starts with ``prefix`` (``#`` optional)."""
        found = self.channels_with_prefix(prefix)
        return found[0] if found else None

    def channels_with_prefix(self, prefix: str) -> list[Channel]:
        prefix = prefix.removeprefix("#")
        return [c for c in self.channels.values() if not c.is_im and c.name.startswith(prefix)]

    def messages(self, channel: str, *, system: bool = False) -> list[Message]:
        """Messages of a channel (id or name) oldest first, thread replies included.

        System messages (``channel_join``, ``channel_topic``, ...) are left out unless
        ``system=True``; ``conversations.history`` always returns them, as Slack does.
        """
        found = self.channels.get(channel) or self.channel_by_name(channel)
        if found is None:
            return []
        return [m for m in found.messages if system or m.subtype not in SYSTEM_SUBTYPES]

    def thread(self, channel_id: str, thread_ts: str) -> list[Message]:
        """A thread's replies (without the parent), oldest first."""
        return [m for m in self.messages(channel_id) if m.thread_ts == thread_ts and m.ts != thread_ts]

    def ephemerals_for(self, user_id: str, channel_id: str | None = None) -> list[EphemeralMessage]:
        return [
            e
            for e in self.ephemerals
            if e.user == user_id and (channel_id is None or e.channel == channel_id)
        ]

    async def wait_for(self, predicate: Callable[[Self], T | bool | None], timeout: float = 10) -> T:
        """Wait until ``predicate(self)`` returns a truthy value and return it.

        The predicate is re-evaluated on every state change (API call, upload, response_url post,
        setup helper); there is no polling. On timeout raises ``TimeoutError`` describing the
        recorded calls and responses.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            result = predicate(self)
            if result:
                return cast(T, result)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(self._timeout_report(predicate, timeout))
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                result = predicate(self)
                if result:
                    return cast(T, result)
                raise TimeoutError(self._timeout_report(predicate, timeout)) from None

    # -- Socket Mode, triggers and response URLs ------------------------------------------------

    @property
    def connected_sockets(self) -> list[SocketConnection]:
        """Open Socket Mode connections, oldest first."""
        return [c for c in self.socket_connections if c.is_open]

    def issue_trigger_id(self, user_id: str) -> str:
        """A fresh ``trigger_id`` (valid for ``trigger_ttl`` seconds, usable once)."""
        trigger = f"{int(time.time())}.{next(self._ids)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = Trigger(user_id=user_id, issued=time.monotonic())
        return trigger

    def new_response_url(
        self,
        kind: str,
        *,
        user_id: str,
        channel_id: str | None,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
    ) -> str:
        rid = secrets.token_urlsafe(12)
        self._response_urls[rid] = ResponseUrl(
            id=rid,
            kind=kind,
            channel_id=channel_id,
            user_id=user_id,
            created=time.monotonic(),
            message_ts=message_ts,
            is_ephemeral=is_ephemeral,
        )
        return f"{self.base_url}/response/{rid}"

    # -- internals: ids, time, notification ---------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):010d}"

    def _next_ts(self) -> str:
        now_us = time.time_ns() // 1000
        if now_us <= self._last_ts_us:
            now_us = self._last_ts_us + 1
        self._last_ts_us = now_us
        return f"{now_us // 1_000_000}.{now_us % 1_000_000:06d}"

    @staticmethod
    def _random_id(length: int = 5) -> str:
        return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))

    def _with_ids(self, blocks: list[JSON]) -> list[JSON]:
        """Copy blocks, giving every block a block_id and interactive element an action_id (as Slack does)."""
        out = copy.deepcopy(blocks)
        for block in out:
            if not isinstance(block, dict):
                continue
            block.setdefault("block_id", self._random_id())
            for element in interactive_elements(block):
                element.setdefault("action_id", self._random_id())
        return out

    def _timeout_report(self, predicate: Callable[..., Any], timeout: float) -> str:
        name = getattr(predicate, "__qualname__", repr(predicate))
        lines = [f"condition {name} not met within {timeout}s; {len(self.calls)} calls recorded"]
        for call in self.calls[-30:]:
            lines.append(f"  {call.describe()}")
        if self.responses:
            lines.append(f"response_url posts ({len(self.responses)}):")
            for r in self.responses[-10:]:
                lines.append(f"  {r.via} {r.kind} [{r.status}] {shorten(r.body, 160)}")
        if self.socket_connections or self.socket_envelopes:
            lines.append(
                f"socket mode: {len(self.connected_sockets)} open of {len(self.socket_connections)} connections,"
                f" {len(self.socket_envelopes)} envelopes"
            )
            for e in self.socket_envelopes[-10:]:
                outcome = f"ack {shorten(e.ack_payload, 120)}" if e.acked else f"error={e.error}"
                lines.append(f"  {e.type} {e.envelope_id} -> {outcome}")
        return "\n".join(lines)

    # -- internals: lookups ---------------------------------------------------------------------

    def _require_channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id) or self.channel_by_name(channel_id)
        if channel is None:
            raise LookupError(f"no channel {channel_id}")
        return channel

    def _visible(self, channel: Channel) -> bool:
        return not (channel.is_private or channel.is_im) or self.bot_user_id in channel.members

    def _channel(self, args: JSON, name: str = "channel") -> Channel:
        """A channel given by ID, as the bot can see it; ``channel_not_found`` otherwise."""
        value = opt_str(args, name)
        if not value:
            raise SlackError("channel_not_found")
        channel = self.channels.get(value)
        if channel is None or not self._visible(channel):
            raise SlackError("channel_not_found")
        return channel

    def _lookup_post_channel(self, value: str) -> Channel | None:
        if not value:
            return None
        channel = self.channels.get(value)
        if channel is None:
            channel = self.channel_by_name(value.removeprefix("#"))
        if channel is None and value in self.users and value != self.bot_user_id:
            channel = self._im_with(value)
        if channel is None or not self._visible(channel):
            return None
        return channel

    def _im_with(self, user_id: str) -> Channel:
        for channel in self.channels.values():
            if channel.is_im and user_id in channel.members:
                return channel
        channel = Channel(
            id=self._new_id("D"),
            name=user_id,
            creator=self.bot_user_id,
            created=int(time.time()),
            members=[user_id, self.bot_user_id],
            is_im=True,
        )
        self.channels[channel.id] = channel
        return channel

    def _user(self, args: JSON, name: str = "user") -> User:
        user_id = req_str(args, name)
        user = self.users.get(user_id)
        if user is None:
            raise SlackError("user_not_found")
        return user

    def _require_member(self, channel: Channel) -> None:
        if self.bot_user_id not in channel.members:
            raise SlackError("not_in_channel")

    def _require_unarchived(self, channel: Channel) -> None:
        if channel.is_archived:
            raise SlackError("is_archived")
