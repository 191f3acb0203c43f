"""The workspace model: users, channels, messages, files, views, and what the sandbox records."""

from __future__ import annotations

import copy
import mimetypes
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.slack.wire import shorten, truthy

JSON = dict[str, Any]


@dataclass
class User:
    id: str
    name: str
    real_name: str
    email: str | None
    is_bot: bool = False
    bot_id: str | None = None
    deleted: bool = False
    tz: str = "Europe/London"

    def to_api(self, team_id: str) -> JSON:
        profile: JSON = {
            "real_name": self.real_name,
            "display_name": self.name,
            "real_name_normalized": self.real_name,
            "display_name_normalized": self.name,
            "team": team_id,
        }
        if self.email is not None:
            profile["email"] = self.email
        if self.bot_id is not None:
            profile["bot_id"] = self.bot_id
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "is_admin": False,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "profile": profile,
        }


@dataclass
class Usergroup:
    id: str
    handle: str
    name: str
    users: list[str]
    description: str = ""
    enabled: bool = True

    def to_api(self, team_id: str, *, include_users: bool) -> JSON:
        d: JSON = {
            "id": self.id,
            "team_id": team_id,
            "is_usergroup": True,
            "name": self.name,
            "description": self.description,
            "handle": self.handle,
            "is_external": False,
            "date_delete": 0 if self.enabled else 1,
            "user_count": len(self.users),
        }
        if include_users:
            d["users"] = list(self.users)
        return d


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str
    blocks: list[JSON] | None = None
    attachments: list[JSON] | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    bot_id: str | None = None
    subtype: str | None = None
    files: list[str] = field(default_factory=list)
    metadata: JSON | None = None
    edited: JSON | None = None
    #: previous versions, oldest first: {"text", "blocks", "attachments", "replaced_at"}
    edits: list[JSON] = field(default_factory=list)
    #: emoji name -> user ids, in the order they reacted
    reactions: dict[str, list[str]] = field(default_factory=dict)
    username: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class Channel:
    id: str
    name: str
    creator: str
    created: int
    members: list[str] = field(default_factory=list)
    topic: str = ""
    purpose: str = ""
    is_private: bool = False
    is_archived: bool = False
    is_general: bool = False
    is_im: bool = False
    messages: list[Message] = field(default_factory=list)
    previous_names: list[str] = field(default_factory=list)
    topic_set_by: str = ""
    topic_set_at: int = 0
    purpose_set_by: str = ""
    purpose_set_at: int = 0

    def message(self, ts: str) -> Message | None:
        for msg in self.messages:
            if msg.ts == ts:
                return msg
        return None


@dataclass
class EphemeralMessage:
    channel: str
    user: str
    ts: str
    text: str
    blocks: list[JSON] | None = None
    attachments: list[JSON] | None = None
    thread_ts: str | None = None
    #: "chat.postEphemeral", "response_url" or "ack"
    source: str = "chat.postEphemeral"


@dataclass
class SandboxFile:
    id: str
    name: str
    length: int
    user: str
    created: int
    title: str = ""
    alt_txt: str | None = None
    snippet_type: str | None = None
    data: bytes | None = None
    upload_key: str = ""
    completed: bool = False
    #: channel id -> message ts of the share
    shares: dict[str, str] = field(default_factory=dict)

    @property
    def mimetype(self) -> str:
        guessed, _ = mimetypes.guess_type(self.name)
        return guessed or "application/octet-stream"

    @property
    def filetype(self) -> str:
        _, dot, ext = self.name.rpartition(".")
        return ext.lower() if dot else "binary"


@dataclass
class View:
    id: str
    team_id: str
    user_id: str
    type: str
    payload: JSON
    hash: str
    app_id: str
    bot_id: str
    root_view_id: str
    previous_view_id: str | None = None
    state_values: JSON = field(default_factory=dict)
    closed: bool = False

    @property
    def blocks(self) -> list[JSON]:
        blocks = self.payload.get("blocks")
        return blocks if isinstance(blocks, list) else []

    def to_api(self) -> JSON:
        d = copy.deepcopy(self.payload)
        d.update(
            {
                "id": self.id,
                "team_id": self.team_id,
                "type": self.type,
                "hash": self.hash,
                "state": {"values": copy.deepcopy(self.state_values)},
                "root_view_id": self.root_view_id,
                "previous_view_id": self.previous_view_id,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
                "private_metadata": self.payload.get("private_metadata", ""),
                "callback_id": self.payload.get("callback_id", ""),
                "external_id": self.payload.get("external_id", ""),
                "clear_on_close": bool(self.payload.get("clear_on_close", False)),
                "notify_on_close": bool(self.payload.get("notify_on_close", False)),
            }
        )
        return d


@dataclass
class RecordedCall:
    method: str
    args: JSON
    time: float
    status: int
    ok: bool
    error: str | None
    response: JSON
    http_method: str = "POST"

    def describe(self) -> str:
        outcome = "ok" if self.ok else f"error={self.error}"
        shown = {k: shorten(v) for k, v in self.args.items()}
        return f"{self.method} [{self.status} {outcome}] {shown}"


@dataclass
class ResponsePost:
    """A follow-up posted to a ``response_url`` (or a slash command's ack body)."""

    id: str
    kind: str
    channel_id: str | None
    user_id: str
    time: float
    status: int
    body: JSON
    via: str = "response_url"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def response_type(self) -> str:
        value = self.body.get("response_type")
        return value if isinstance(value, str) else "ephemeral"

    @property
    def replace_original(self) -> bool:
        return truthy(self.body.get("replace_original"))

    @property
    def delete_original(self) -> bool:
        return truthy(self.body.get("delete_original"))

    @property
    def text(self) -> str:
        value = self.body.get("text")
        return value if isinstance(value, str) else ""

    @property
    def blocks(self) -> list[JSON] | None:
        value = self.body.get("blocks")
        return value if isinstance(value, list) else None

    @property
    def thread_ts(self) -> str | None:
        value = self.body.get("thread_ts")
        return value if isinstance(value, str) else None


@dataclass
class ResponseUrl:
    id: str
    kind: str
    channel_id: str | None
    user_id: str
    created: float
    message_ts: str | None = None
    is_ephemeral: bool = False
    uses: int = 0


@dataclass
class Trigger:
    user_id: str
    issued: float
    used: bool = False


@dataclass
class Bucket:
    capacity: float
    per_second: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; return 0 when allowed, else seconds until a token is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


@dataclass
class SocketConnection:
    """One Socket Mode WebSocket a client opened with a ticket from ``apps.connections.open``."""

    id: str
    ticket: str
    opened: float
    closed: float | None = None
    #: every frame the client sent that is not an ack (parsed JSON, or ``{"raw": ...}``)
    received: list[JSON] = field(default_factory=list)
    _ws: web.WebSocketResponse | None = field(default=None, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.closed is None and self._ws is not None and not self._ws.closed


@dataclass
class SocketEnvelope:
    """An envelope the sandbox sent over Socket Mode, and what came back."""

    envelope_id: str
    type: str
    payload: JSON
    accepts_response_payload: bool
    connection_id: str | None
    sent: float
    retry_attempt: int | None = None
    retry_reason: str | None = None
    acked: bool = False
    ack_payload: JSON | None = None
    ack_time: float | None = None
    #: why no ack arrived: ``no_connection``, ``ack_timeout``, ``connection_closed``, ``send_failed``
    error: str | None = None

    def message(self) -> JSON:
        """The frame as Slack sends it."""
        d: JSON = {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.retry_attempt is not None:
            d["retry_attempt"] = self.retry_attempt
            d["retry_reason"] = self.retry_reason or ""
        return d
