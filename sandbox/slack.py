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

import abc
import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import math
import mimetypes
import re
import secrets
import string
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

import aiohttp
from aiohttp import web

__all__ = [
    "Channel",
    "DriverResponse",
    "EphemeralMessage",
    "Message",
    "RecordedCall",
    "ResponsePost",
    "SandboxFile",
    "SlackDriver",
    "SlackSandbox",
    "SocketConnection",
    "SocketEnvelope",
    "SocketModeDriver",
    "User",
    "Usergroup",
    "View",
    "sign",
    "validate_message_blocks",
    "validate_view",
]

T = TypeVar("T")
JSON = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Limits and tables
# --------------------------------------------------------------------------------------------

TIER_PER_MINUTE: Final[Mapping[int, int]] = {1: 1, 2: 20, 3: 50, 4: 100}

#: Per-method tiers (protocols C.4, from Slack's own MethodsRateLimits table).
METHOD_TIERS: Final[Mapping[str, int]] = {
    "auth.test": 4,  # "special"; treated as Tier 4
    "apps.connections.open": 1,
    "team.info": 3,
    "conversations.archive": 2,
    "conversations.create": 2,
    "conversations.history": 3,
    "conversations.info": 3,
    "conversations.invite": 3,
    "conversations.join": 3,
    "conversations.list": 2,
    "conversations.members": 4,
    "conversations.open": 3,
    "conversations.rename": 2,
    "conversations.replies": 3,
    "conversations.setPurpose": 2,
    "conversations.setTopic": 2,
    "conversations.unarchive": 2,
    "chat.delete": 3,
    "chat.getPermalink": 4,  # "special"; treated as Tier 4
    "chat.postEphemeral": 4,
    "chat.update": 3,
    "files.completeUploadExternal": 4,
    "files.getUploadURLExternal": 4,
    "files.info": 4,
    "reactions.add": 3,
    "usergroups.list": 2,
    "usergroups.users.list": 2,
    "users.info": 4,
    "users.list": 2,
    "users.lookupByEmail": 3,
    "views.open": 4,
    "views.push": 4,
    "views.update": 4,
}

MAX_MESSAGE_BLOCKS: Final = 50
MAX_VIEW_BLOCKS: Final = 100
MAX_MESSAGE_TEXT: Final = 40_000
MAX_CHANNEL_NAME: Final = 80
MAX_TOPIC: Final = 250
MAX_PURPOSE: Final = 250
RESPONSE_URL_MAX_USES: Final = 5
RESPONSE_URL_TTL: Final = 30 * 60.0
VIEW_STACK_LIMIT: Final = 3
#: Slack expects a Socket Mode envelope to be acknowledged within 3 seconds.
SOCKET_ACK_TIMEOUT: Final = 3.0
#: How long an ``apps.connections.open`` URL may wait to be used (sandbox choice; it is one-time).
SOCKET_TICKET_TTL: Final = 30.0
#: Methods that take the app-level token (``xapp-``) instead of the bot token.
APP_LEVEL_METHODS: Final = frozenset({"apps.connections.open"})

_CHANNEL_NAME_RE: Final = re.compile(r"^[a-z0-9_-]+$")
_EMOJI_NAME_RE: Final = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")
_ID_ALPHABET: Final = string.ascii_letters + string.digits

_BLOCK_TYPES: Final = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_SINGLE_SELECTS: Final = frozenset(
    {"static_select", "external_select", "users_select", "conversations_select", "channels_select"}
)
_MULTI_SELECTS: Final = frozenset({"multi_" + s for s in _SINGLE_SELECTS})
_SELECTS: Final = _SINGLE_SELECTS | _MULTI_SELECTS
_PICKERS: Final = frozenset({"datepicker", "timepicker", "datetimepicker"})
_CHOICES: Final = frozenset({"checkboxes", "radio_buttons"})
_TEXT_INPUTS: Final = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
    }
)
_ACTIONS_ELEMENTS: Final = (
    frozenset({"button", "overflow", "workflow_button"}) | _SELECTS | _PICKERS | _CHOICES
)
_ACCESSORY_ELEMENTS: Final = _ACTIONS_ELEMENTS | {"image"}
_INPUT_ELEMENTS: Final = _SELECTS | _PICKERS | _CHOICES | _TEXT_INPUTS
_INTERACTIVE_ELEMENTS: Final = _ACTIONS_ELEMENTS | _TEXT_INPUTS
_SYSTEM_SUBTYPES: Final = frozenset(
    {
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "channel_archive",
        "channel_unarchive",
    }
)

DEFAULT_USER: Final = "U_ALICE"

# --------------------------------------------------------------------------------------------
# Block Kit validation
# --------------------------------------------------------------------------------------------


class _Validator:
    """Collects Slack-style error strings: ``<reason> [json-pointer:/blocks/0/text/text]``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, reason: str, ptr: str) -> None:
        self.errors.append(f"{reason} [json-pointer:{ptr}]")

    # -- primitives ---------------------------------------------------------------------------

    def string(
        self, obj: Mapping[str, Any], key: str, ptr: str, limit: int, *, required: bool = False
    ) -> None:
        value = obj.get(key)
        where = f"{ptr}/{key}"
        if value is None:
            if required:
                self.err(f"missing required field: {key}", ptr)
            return
        if not isinstance(value, str):
            self.err("must be a string", where)
        elif required and value == "":
            self.err("must be more than 0 characters", where)
        elif len(value) > limit:
            self.err(f"must be less than {limit + 1} characters", where)

    def items(self, value: Any, ptr: str, limit: int, *, minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.err("must be an array", ptr)
            return []
        if len(value) < minimum:
            self.err(f"must provide at least {minimum} item{'s' if minimum != 1 else ''}", ptr)
        if len(value) > limit:
            self.err(f"must be less than {limit + 1} items", ptr)
        return value

    def text(
        self,
        value: Any,
        ptr: str,
        limit: int,
        *,
        plain_only: bool = False,
        required: bool = True,
        key: str = "text",
    ) -> None:
        if value is None:
            if required:
                parent, _, _ = ptr.rpartition("/")
                self.err(f"missing required field: {key}", parent or "/")
            return
        if not isinstance(value, dict):
            self.err("must provide an object", ptr)
            return
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        kind = value.get("type")
        if kind not in allowed:
            self.err(f"must be one of: {', '.join(allowed)}", f"{ptr}/type")
        text = value.get("text")
        if text is None:
            self.err("missing required field: text", ptr)
        elif not isinstance(text, str):
            self.err("must be a string", f"{ptr}/text")
        elif text == "":
            self.err("must be more than 0 characters", f"{ptr}/text")
        elif len(text) > limit:
            self.err(f"must be less than {limit + 1} characters", f"{ptr}/text")

    def boolean(self, obj: Mapping[str, Any], key: str, ptr: str) -> None:
        if key in obj and not isinstance(obj[key], bool):
            self.err("must be a boolean", f"{ptr}/{key}")

    # -- composition objects ------------------------------------------------------------------

    def confirm(self, value: Any, ptr: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.err("must provide an object", ptr)
            return
        self.text(value.get("title"), f"{ptr}/title", 100, plain_only=True, key="title")
        self.text(value.get("text"), f"{ptr}/text", 300)
        self.text(value.get("confirm"), f"{ptr}/confirm", 30, plain_only=True, key="confirm")
        self.text(value.get("deny"), f"{ptr}/deny", 30, plain_only=True, key="deny")
        style = value.get("style")
        if style is not None and style not in ("primary", "danger"):
            self.err("must be one of: primary, danger", f"{ptr}/style")

    def option(self, value: Any, ptr: str, *, mrkdwn_ok: bool, url_ok: bool = False) -> None:
        if not isinstance(value, dict):
            self.err("must provide an object", ptr)
            return
        self.text(value.get("text"), f"{ptr}/text", 75, plain_only=not mrkdwn_ok)
        self.string(value, "value", ptr, 150, required=True)
        self.text(value.get("description"), f"{ptr}/description", 75, required=False)
        if url_ok:
            self.string(value, "url", ptr, 3000)
        elif "url" in value:
            self.err("url is only allowed on overflow menu options", f"{ptr}/url")

    # -- elements -----------------------------------------------------------------------------

    def image_element(self, el: Mapping[str, Any], ptr: str) -> None:
        has_url = "image_url" in el
        has_file = "slack_file" in el
        if has_url == has_file:
            self.err("must provide exactly one of image_url or slack_file", ptr)
        self.string(el, "image_url", ptr, 3000)
        self.string(el, "alt_text", ptr, 2000, required=True)

    def element(self, el: Any, ptr: str, allowed: frozenset[str], action_ids: set[str]) -> None:
        if not isinstance(el, dict):
            self.err("must provide an object", ptr)
            return
        kind = el.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            self.err(f"element type {kind!r} is not allowed here; allowed: {', '.join(sorted(allowed))}", ptr)
            return
        if kind == "image":
            self.image_element(el, ptr)
            return
        action_id = el.get("action_id")
        if action_id is not None:
            self.string(el, "action_id", ptr, 255)
            if isinstance(action_id, str):
                if action_id in action_ids:
                    self.err(f"action_id {action_id!r} is already used in this block", f"{ptr}/action_id")
                action_ids.add(action_id)
        self.confirm(el.get("confirm"), f"{ptr}/confirm")
        if kind == "button":
            self.text(el.get("text"), f"{ptr}/text", 75, plain_only=True)
            self.string(el, "value", ptr, 2000)
            self.string(el, "url", ptr, 3000)
            self.string(el, "accessibility_label", ptr, 75)
            style = el.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.err("must be one of: primary, danger", f"{ptr}/style")
        elif kind == "workflow_button":
            self.text(el.get("text"), f"{ptr}/text", 75, plain_only=True)
            if not isinstance(el.get("workflow"), dict):
                self.err("missing required field: workflow", ptr)
        elif kind in _SELECTS:
            self.text(el.get("placeholder"), f"{ptr}/placeholder", 150, plain_only=True, required=False)
            if kind in ("static_select", "multi_static_select"):
                self.select_options(el, ptr)
            if kind in _MULTI_SELECTS and "max_selected_items" in el:
                mx = el["max_selected_items"]
                if not isinstance(mx, int) or isinstance(mx, bool) or mx < 1:
                    self.err("must be an integer of at least 1", f"{ptr}/max_selected_items")
        elif kind == "overflow":
            for i, opt in enumerate(self.items(el.get("options"), f"{ptr}/options", 5)):
                self.option(opt, f"{ptr}/options/{i}", mrkdwn_ok=False, url_ok=True)
        elif kind in _CHOICES:
            for i, opt in enumerate(self.items(el.get("options"), f"{ptr}/options", 10)):
                self.option(opt, f"{ptr}/options/{i}", mrkdwn_ok=True)
        elif kind in _PICKERS:
            self.text(el.get("placeholder"), f"{ptr}/placeholder", 150, plain_only=True, required=False)
        elif kind in _TEXT_INPUTS:
            self.text(el.get("placeholder"), f"{ptr}/placeholder", 150, plain_only=True, required=False)
            if kind == "plain_text_input":
                for key in ("min_length", "max_length"):
                    if key in el:
                        n = el[key]
                        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 3000:
                            self.err("must be an integer between 0 and 3000", f"{ptr}/{key}")

    def select_options(self, el: Mapping[str, Any], ptr: str) -> None:
        has_options = "options" in el
        has_groups = "option_groups" in el
        if has_options and has_groups:
            self.err("must provide only one of options or option_groups", ptr)
        elif not has_options and not has_groups:
            self.err("missing required field: options", ptr)
        if has_options:
            for i, opt in enumerate(self.items(el.get("options"), f"{ptr}/options", 100)):
                self.option(opt, f"{ptr}/options/{i}", mrkdwn_ok=False)
        if has_groups:
            for g, group in enumerate(self.items(el.get("option_groups"), f"{ptr}/option_groups", 100)):
                gptr = f"{ptr}/option_groups/{g}"
                if not isinstance(group, dict):
                    self.err("must provide an object", gptr)
                    continue
                self.text(group.get("label"), f"{gptr}/label", 75, plain_only=True, key="label")
                for i, opt in enumerate(self.items(group.get("options"), f"{gptr}/options", 100)):
                    self.option(opt, f"{gptr}/options/{i}", mrkdwn_ok=False)

    # -- blocks -------------------------------------------------------------------------------

    def blocks(self, blocks: Any, ptr: str, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.err("must be an array", ptr)
            return
        if len(blocks) > max_blocks:
            self.err(f"must be less than {max_blocks + 1} items", ptr)
        block_ids: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{ptr}/{i}", block_ids)

    def block(self, block: Any, ptr: str, block_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self.err("must provide an object", ptr)
            return
        kind = block.get("type")
        if not isinstance(kind, str) or kind not in _BLOCK_TYPES:
            self.err(f"unknown block type {kind!r}; expected one of: {', '.join(sorted(_BLOCK_TYPES))}", ptr)
            return
        block_id = block.get("block_id")
        if block_id is not None:
            self.string(block, "block_id", ptr, 255)
            if isinstance(block_id, str):
                if block_id in block_ids:
                    self.err(
                        f"block_id {block_id!r} is already used; block_ids must be unique", ptr + "/block_id"
                    )
                block_ids.add(block_id)
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.err("must provide text or fields", ptr)
            if "text" in block:
                self.text(block["text"], f"{ptr}/text", 3000)
            if "fields" in block:
                for i, fld in enumerate(self.items(block["fields"], f"{ptr}/fields", 10)):
                    self.text(fld, f"{ptr}/fields/{i}", 2000)
            if "accessory" in block:
                self.element(block["accessory"], f"{ptr}/accessory", _ACCESSORY_ELEMENTS, action_ids)
            self.boolean(block, "expand", ptr)
        elif kind == "header":
            self.text(block.get("text"), f"{ptr}/text", 150, plain_only=True)
        elif kind == "context":
            for i, el in enumerate(self.items(block.get("elements"), f"{ptr}/elements", 10)):
                eptr = f"{ptr}/elements/{i}"
                if isinstance(el, dict) and el.get("type") == "image":
                    self.image_element(el, eptr)
                else:
                    self.text(el, eptr, 3000)
        elif kind == "actions":
            for i, el in enumerate(self.items(block.get("elements"), f"{ptr}/elements", 25)):
                self.element(el, f"{ptr}/elements/{i}", _ACTIONS_ELEMENTS, action_ids)
        elif kind == "image":
            self.image_element(block, ptr)
            self.text(block.get("title"), f"{ptr}/title", 2000, plain_only=True, required=False)
        elif kind == "markdown":
            self.string(block, "text", ptr, 12000, required=True)
        elif kind == "rich_text":
            for i, el in enumerate(self.items(block.get("elements"), f"{ptr}/elements", 10_000, minimum=0)):
                if not isinstance(el, dict) or not isinstance(el.get("type"), str):
                    self.err("must provide an object with a type", f"{ptr}/elements/{i}")
        elif kind == "input":
            self.text(block.get("label"), f"{ptr}/label", 2000, plain_only=True, key="label")
            self.text(block.get("hint"), f"{ptr}/hint", 2000, plain_only=True, required=False)
            if "element" not in block:
                self.err("missing required field: element", ptr)
            else:
                self.element(block["element"], f"{ptr}/element", _INPUT_ELEMENTS, action_ids)
            self.boolean(block, "optional", ptr)
            self.boolean(block, "dispatch_action", ptr)
        elif kind == "file":
            self.string(block, "external_id", ptr, 255, required=True)
            self.string(block, "source", ptr, 255, required=True)
        elif kind == "video":
            for key in ("alt_text", "thumbnail_url", "video_url"):
                self.string(block, key, ptr, 3000, required=True)
            self.text(block.get("title"), f"{ptr}/title", 200, plain_only=True, key="title")
        elif kind == "table":
            self.items(block.get("rows"), f"{ptr}/rows", 100)


def validate_message_blocks(blocks: Any, *, pointer: str = "/blocks") -> list[str]:
    """Validate a message's ``blocks`` as Slack does; returns Slack-style error strings."""
    v = _Validator()
    v.blocks(blocks, pointer, MAX_MESSAGE_BLOCKS)
    return v.errors


def validate_view(view: Any) -> list[str]:
    """Validate a modal or Home tab view payload; returns Slack-style error strings."""
    v = _Validator()
    if not isinstance(view, dict):
        v.err("must provide an object", "/view")
        return v.errors
    kind = view.get("type")
    if kind not in ("modal", "home"):
        v.err("must be one of: modal, home", "/view/type")
    if kind == "modal":
        v.text(view.get("title"), "/view/title", 24, plain_only=True, key="title")
        v.text(view.get("submit"), "/view/submit", 24, plain_only=True, required=False)
        v.text(view.get("close"), "/view/close", 24, plain_only=True, required=False)
    if "blocks" not in view:
        v.err("missing required field: blocks", "/view")
    else:
        v.blocks(view["blocks"], "/view/blocks", MAX_VIEW_BLOCKS)
    v.string(view, "private_metadata", "/view", 3000)
    v.string(view, "callback_id", "/view", 255)
    v.string(view, "external_id", "/view", 255)
    blocks = view.get("blocks")
    has_input = isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") == "input" for b in blocks
    )
    if kind == "modal" and has_input and view.get("submit") is None:
        v.err("submit is required when the view contains input blocks", "/view/submit")
    return v.errors


# --------------------------------------------------------------------------------------------
# Workspace model
# --------------------------------------------------------------------------------------------


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
        shown = {k: _shorten(v) for k, v in self.args.items()}
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
        return _truthy(self.body.get("replace_original"))

    @property
    def delete_original(self) -> bool:
        return _truthy(self.body.get("delete_original"))

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
class _ResponseUrl:
    id: str
    kind: str
    channel_id: str | None
    user_id: str
    created: float
    message_ts: str | None = None
    is_ephemeral: bool = False
    uses: int = 0


@dataclass
class _Trigger:
    user_id: str
    issued: float
    used: bool = False


@dataclass
class _Bucket:
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


class _Fail(Exception):
    def __init__(self, error: str, *, messages: Iterable[str] = (), **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)
        self.extra = extra


def _invalid_args(*messages: str) -> _Fail:
    return _Fail("invalid_arguments", messages=[f"[ERROR] {m}" for m in messages])


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return False


def _shorten(value: Any, limit: int = 80) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        text = value if not isinstance(value, str) or len(value) <= limit else value[:limit] + "…"
        return text
    dumped = json.dumps(value, default=str)
    return dumped if len(dumped) <= limit else dumped[:limit] + "…"


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"next:{offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        kind, _, number = base64.b64decode(cursor, validate=True).decode().partition(":")
        offset = int(number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Fail("invalid_cursor") from exc
    if kind != "next" or offset < 0:
        raise _Fail("invalid_cursor")
    return offset


def _ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    try:
        return int(sec), int((frac or "0").ljust(6, "0")[:6])
    except ValueError:
        return (0, 0)


# --------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------


def sign(signing_secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Headers Slack sends with a request: v0 HMAC-SHA256 over ``v0:<ts>:<body>`` (protocols C.1)."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


# --------------------------------------------------------------------------------------------
# The sandbox server
# --------------------------------------------------------------------------------------------

_Handler = Callable[[JSON], JSON]


class SlackSandbox:
    """A strict, in-process fake Slack workspace served over HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        rate_limits: bool = True,
        rate_scale: float = 1.0,
        postmessage_burst: int = 3,
        team_id: str = "T_SANDBOX",
        team_name: str = "Sandbox",
        team_domain: str = "sandbox",
        bot_user_id: str = "U_BOT",
        bot_id: str = "B_BOT",
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

        Defaults: users U_ALICE / U_BOB / U_CAROL (``<name>@example.com``), user group S_SRE
        (``@sre-oncall``: alice, bob), ``#general`` (C_GENERAL, the bot is NOT a member) and
        ``#incidents`` (C_INCIDENTS, humans and the bot are members; also ``incident_channel``).
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
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._forced: dict[str, int] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._triggers: dict[str, _Trigger] = {}
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
        self._methods: dict[str, _Handler] = {
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

        self.users[bot_user_id] = User(
            id=bot_user_id, name=bot_name, real_name=bot_name, email=None, is_bot=True, bot_id=bot_id
        )
        if default_users:
            self.add_user("U_ALICE", "alice", "Alice Anderson", "alice@example.com")
            self.add_user("U_BOB", "bob", "Bob Brown", "bob@example.com")
            self.add_user("U_CAROL", "carol", "Carol Chen", "carol@example.com")
            self.add_usergroup("S_SRE", "sre-oncall", ["U_ALICE", "U_BOB"], name="SRE on-call")
        humans = [u.id for u in self.users.values() if not u.is_bot]
        self.incident_channel: Channel | None = None
        if default_channels:
            self.add_channel("general", channel_id="C_GENERAL", members=humans, bot_member=False)
            self.channels["C_GENERAL"].is_general = True
            self.incident_channel = self.add_channel(
                incident_channel, channel_id="C_INCIDENTS", members=humans, bot_member=True
            )

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
        problem = self._channel_name_error(name)
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
        return [m for m in found.messages if system or m.subtype not in _SYSTEM_SUBTYPES]

    def thread(self, channel_id: str, thread_ts: str) -> list[Message]:
        """A thread's replies (without the parent), oldest first."""
        return [m for m in self.messages(channel_id) if m.thread_ts == thread_ts and m.ts != thread_ts]

    def ephemerals_for(self, user_id: str, channel_id: str | None = None) -> list[EphemeralMessage]:
        return [
            e
            for e in self.ephemerals
            if e.user == user_id and (channel_id is None or e.channel == channel_id)
        ]

    def message_json(self, msg: Message) -> JSON:
        """A stored message as the Web API and interaction payloads show it."""
        d: JSON = {"type": "message", "ts": msg.ts, "user": msg.user, "text": msg.text, "team": self.team_id}
        if msg.subtype is not None:
            d["subtype"] = msg.subtype
        if msg.bot_id is not None:
            d["bot_id"] = msg.bot_id
            d["app_id"] = self.app_id
            d["bot_profile"] = {
                "id": msg.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
                "deleted": False,
            }
        if msg.blocks is not None:
            d["blocks"] = copy.deepcopy(msg.blocks)
        if msg.attachments is not None:
            d["attachments"] = copy.deepcopy(msg.attachments)
        if msg.files:
            d["files"] = [self._file_json(self.files[f]) for f in msg.files if f in self.files]
            d["upload"] = True
            d["display_as_bot"] = False
        if msg.metadata is not None:
            d["metadata"] = copy.deepcopy(msg.metadata)
        if msg.edited is not None:
            d["edited"] = dict(msg.edited)
        if msg.reactions:
            d["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in msg.reactions.items()
            ]
        for key in ("username", "icon_emoji", "icon_url"):
            value = getattr(msg, key)
            if value is not None:
                d[key] = value
        channel = self.channels.get(msg.channel)
        if msg.thread_ts is not None:
            d["thread_ts"] = msg.thread_ts
            if msg.is_reply:
                parent = channel.message(msg.thread_ts) if channel else None
                if parent is not None:
                    d["parent_user_id"] = parent.user
                if msg.reply_broadcast:
                    d["subtype"] = "thread_broadcast"
        if channel is not None:
            replies = [m for m in channel.messages if m.thread_ts == msg.ts and m.ts != msg.ts]
            if replies:
                reply_users = list(dict.fromkeys(m.user for m in replies))
                d.update(
                    {
                        "thread_ts": msg.ts,
                        "reply_count": len(replies),
                        "reply_users_count": len(reply_users),
                        "latest_reply": replies[-1].ts,
                        "reply_users": reply_users,
                        "is_locked": False,
                        "subscribed": False,
                    }
                )
        return d

    def snapshot(self) -> JSON:
        """A JSON-able picture of the workspace (for assertions and the web view)."""
        return {
            "team": {"id": self.team_id, "name": self.team_name, "domain": self.team_domain},
            "bot": {"user_id": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id},
            "users": [u.to_api(self.team_id) for u in self.users.values()],
            "usergroups": [g.to_api(self.team_id, include_users=True) for g in self.usergroups.values()],
            "channels": [
                {
                    **self._channel_json(c),
                    "members": list(c.members),
                    "messages": [
                        {**self.message_json(m), "edits": copy.deepcopy(m.edits)} for m in c.messages
                    ],
                }
                for c in self.channels.values()
            ],
            "files": [self._file_json(f) for f in self.files.values()],
            "ephemerals": [
                {
                    "channel": e.channel,
                    "user": e.user,
                    "ts": e.ts,
                    "text": e.text,
                    "blocks": copy.deepcopy(e.blocks),
                    "thread_ts": e.thread_ts,
                    "source": e.source,
                }
                for e in self.ephemerals
            ],
            "views": [v.to_api() | {"user_id": v.user_id, "closed": v.closed} for v in self.views.values()],
            "responses": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "via": r.via,
                    "channel_id": r.channel_id,
                    "user_id": r.user_id,
                    "time": r.time,
                    "status": r.status,
                    "error": r.error,
                    "body": copy.deepcopy(r.body),
                }
                for r in self.responses
            ],
            "calls": [
                {"method": c.method, "time": c.time, "status": c.status, "ok": c.ok, "error": c.error}
                for c in self.calls
            ],
            "socket_mode": {
                "connections": [
                    {"id": c.id, "opened": c.opened, "closed": c.closed, "open": c.is_open}
                    for c in self.socket_connections
                ],
                "envelopes": [
                    {
                        **e.message(),
                        "payload": copy.deepcopy(e.payload),
                        "connection_id": e.connection_id,
                        "sent": e.sent,
                        "acked": e.acked,
                        "ack_payload": copy.deepcopy(e.ack_payload),
                        "ack_time": e.ack_time,
                        "error": e.error,
                    }
                    for e in self.socket_envelopes
                ],
            },
        }

    async def wait_for(self, predicate: Callable[[SlackSandbox], T | bool | None], timeout: float = 10) -> T:
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

    # -- Socket Mode ----------------------------------------------------------------------------

    @property
    def connected_sockets(self) -> list[SocketConnection]:
        """Open Socket Mode connections, oldest first."""
        return [c for c in self.socket_connections if c.is_open]

    async def send_envelope(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        timeout: float = SOCKET_ACK_TIMEOUT,
    ) -> SocketEnvelope:
        """Send a ``slash_commands`` / ``interactive`` / ``events_api`` envelope and wait for its ack.

        Waits up to ``timeout`` in all for an open connection and the ack; connections take
        envelopes in turn. Never raises for a missing ack: the returned (and recorded) envelope has
        ``acked`` False and ``error`` set to ``no_connection``, ``ack_timeout``,
        ``connection_closed`` or ``send_failed``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        envelope = SocketEnvelope(
            envelope_id=str(uuid.uuid4()),
            type=kind,
            payload=copy.deepcopy(dict(payload)),
            accepts_response_payload=accepts_response_payload,
            connection_id=None,
            sent=time.time(),
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        try:
            open_now: list[SocketConnection] = await self.wait_for(lambda s: s.connected_sockets, timeout)
        except TimeoutError:
            envelope.error = "no_connection"
            self.socket_envelopes.append(envelope)
            self._notify()
            return envelope
        conn = open_now[self._socket_next % len(open_now)]
        self._socket_next += 1
        envelope.connection_id = conn.id
        pending: asyncio.Future[None] = loop.create_future()
        self._socket_pending[envelope.envelope_id] = pending
        self.socket_envelopes.append(envelope)
        self._notify()
        try:
            assert conn._ws is not None
            try:
                await conn._ws.send_str(json.dumps(envelope.message()))
            except (ConnectionError, RuntimeError):
                envelope.error = "send_failed"
                return envelope
            await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
            if not envelope.acked and envelope.error is None:
                envelope.error = "ack_timeout"
            return envelope
        finally:
            self._socket_pending.pop(envelope.envelope_id, None)
            self._notify()

    async def disconnect_sockets(self, reason: str = "refresh_requested", *, close: bool = False) -> None:
        """Send ``{"type": "disconnect", "reason": ...}`` to every open connection, as Slack does
        before refreshing (``warning``, ``refresh_requested``) or disabling (``link_disabled``) the
        link. With ``close`` the sandbox then closes the sockets itself (going away); otherwise the
        client is expected to reconnect and close the old socket."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}}
        conns = self.connected_sockets
        for conn in conns:
            assert conn._ws is not None
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn._ws.send_json(message)
        if close:
            for conn in conns:
                assert conn._ws is not None
                await conn._ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=reason.encode())

    def issue_trigger_id(self, user_id: str) -> str:
        """A fresh ``trigger_id`` (valid for ``trigger_ttl`` seconds, usable once)."""
        trigger = f"{int(time.time())}.{next(self._ids)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = _Trigger(user_id=user_id, issued=time.monotonic())
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
        self._response_urls[rid] = _ResponseUrl(
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
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))

    def _with_ids(self, blocks: list[JSON]) -> list[JSON]:
        """Copy blocks, giving every block a block_id and interactive element an action_id (as Slack does)."""
        out = copy.deepcopy(blocks)
        for block in out:
            if not isinstance(block, dict):
                continue
            block.setdefault("block_id", self._random_id())
            for element in _interactive_elements(block):
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
                lines.append(f"  {r.via} {r.kind} [{r.status}] {_shorten(r.body, 160)}")
        if self.socket_connections or self.socket_envelopes:
            lines.append(
                f"socket mode: {len(self.connected_sockets)} open of {len(self.socket_connections)} connections,"
                f" {len(self.socket_envelopes)} envelopes"
            )
            for e in self.socket_envelopes[-10:]:
                outcome = f"ack {_shorten(e.ack_payload, 120)}" if e.acked else f"error={e.error}"
                lines.append(f"  {e.type} {e.envelope_id} -> {outcome}")
        return "\n".join(lines)

    # -- internals: HTTP ----------------------------------------------------------------------

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
                        raise _Fail("invalid_json") from exc
                    if not isinstance(body, dict):
                        raise _Fail("invalid_json")
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
        except _Fail as fail:
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
        except _Fail as fail:
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
            bucket = _Bucket(capacity=capacity, per_second=per_second, tokens=capacity, stamp=now)
            self._buckets[(method, key)] = bucket
        wait = bucket.take(now)
        if wait <= 0:
            return None
        return max(1, math.ceil(wait))

    # -- internals: argument helpers ----------------------------------------------------------

    @staticmethod
    def _opt_str(args: JSON, name: str) -> str | None:
        value = args.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise _invalid_args(f"must be a string [json-pointer:/{name}]")

    def _req_str(self, args: JSON, name: str) -> str:
        value = self._opt_str(args, name)
        if not value:
            raise _invalid_args(f"missing required field: {name}")
        return value

    @staticmethod
    def _bool(args: JSON, name: str, default: bool = False) -> bool:
        value = args.get(name)
        if value is None or value == "":
            return default
        return _truthy(value)

    @staticmethod
    def _int(args: JSON, name: str, default: int) -> int:
        value = args.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise _invalid_args(f"must be an integer [json-pointer:/{name}]")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise _invalid_args(f"must be an integer [json-pointer:/{name}]") from exc

    @staticmethod
    def _json_arg(args: JSON, name: str, error: str) -> Any:
        value = args.get(name)
        if isinstance(value, str):
            if value.strip() == "":
                return None
            try:
                return json.loads(value)
            except ValueError as exc:
                raise _Fail(error) from exc
        return value

    def _paginate(self, items: list[T], args: JSON, default: int, maximum: int) -> tuple[list[T], JSON]:
        limit = self._int(args, "limit", default)
        if limit <= 0:
            limit = default
        limit = min(limit, maximum)
        cursor = self._opt_str(args, "cursor")
        offset = _decode_cursor(cursor) if cursor else 0
        page = items[offset : offset + limit]
        more = offset + limit < len(items)
        return page, {"next_cursor": _encode_cursor(offset + limit) if more else ""}

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
        value = self._opt_str(args, name)
        if not value:
            raise _Fail("channel_not_found")
        channel = self.channels.get(value)
        if channel is None or not self._visible(channel):
            raise _Fail("channel_not_found")
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
        user_id = self._req_str(args, name)
        user = self.users.get(user_id)
        if user is None:
            raise _Fail("user_not_found")
        return user

    def _require_member(self, channel: Channel) -> None:
        if self.bot_user_id not in channel.members:
            raise _Fail("not_in_channel")

    def _require_unarchived(self, channel: Channel) -> None:
        if channel.is_archived:
            raise _Fail("is_archived")

    @staticmethod
    def _channel_name_error(name: str) -> str | None:
        if not name:
            return "invalid_name_required"
        if len(name) > MAX_CHANNEL_NAME:
            return "invalid_name_maxlength"
        if not _CHANNEL_NAME_RE.match(name):
            return "invalid_name_specials"
        if not name.strip("-_"):
            return "invalid_name_punctuation"
        return None

    def _channel_json(self, channel: Channel) -> JSON:
        if channel.is_im:
            other = next((m for m in channel.members if m != self.bot_user_id), channel.name)
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "user": other,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": channel.id,
            "name": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "created": channel.created,
            "is_archived": channel.is_archived,
            "is_general": channel.is_general,
            "unlinked": 0,
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "parent_conversation": None,
            "creator": channel.creator,
            "is_member": self.bot_user_id in channel.members,
            "topic": {
                "value": channel.topic,
                "creator": channel.topic_set_by,
                "last_set": channel.topic_set_at,
            },
            "purpose": {
                "value": channel.purpose,
                "creator": channel.purpose_set_by,
                "last_set": channel.purpose_set_at,
            },
            "previous_names": list(channel.previous_names),
            "num_members": len(channel.members),
        }

    def _file_json(self, f: SandboxFile) -> JSON:
        public = {cid: [{"ts": ts, "channel_name": self.channels[cid].name}] for cid, ts in f.shares.items()}
        quoted = urllib.parse.quote(f.name)
        return {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "filetype": f.filetype,
            "pretty_type": f.filetype.upper(),
            "user": f.user,
            "user_team": self.team_id,
            "editable": False,
            "size": f.length,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(not self.channels[c].is_private for c in f.shares),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self._base_url}/files/{f.id}/{quoted}",
            "url_private_download": f"{self._base_url}/files/{f.id}/{quoted}?download=1",
            "permalink": f"https://{self.team_domain}.slack.com/files/{f.user}/{f.id}/{quoted}",
            "alt_txt": f.alt_txt,
            "channels": [c for c in f.shares if not self.channels[c].is_private],
            "groups": [c for c in f.shares if self.channels[c].is_private],
            "ims": [],
            "shares": {"public": public} if public else {},
            "comments_count": 0,
        }

    def _message_content(self, args: JSON, *, required: bool) -> tuple[str | None, Any, Any]:
        """Parse and validate text / blocks / attachments of a message-sending call."""
        text = self._opt_str(args, "text")
        blocks = self._json_arg(args, "blocks", "invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise _Fail("invalid_blocks_format")
        attachments = self._json_arg(args, "attachments", "invalid_attachments")
        if attachments is not None and not isinstance(attachments, list):
            raise _Fail("invalid_attachments")
        if required and not text and not blocks and not attachments:
            raise _Fail("no_text")
        errors: list[str] = []
        if blocks is not None:
            errors += validate_message_blocks(blocks)
        for i, attachment in enumerate(attachments or []):
            if not isinstance(attachment, dict):
                raise _Fail("invalid_attachments")
            if "blocks" in attachment:
                errors += validate_message_blocks(attachment["blocks"], pointer=f"/attachments/{i}/blocks")
        if errors:
            raise _Fail("invalid_blocks", errors=errors, messages=[f"[ERROR] {e}" for e in errors])
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            text = text[:MAX_MESSAGE_TEXT]
        return text, blocks, attachments

    def _post(
        self,
        channel: Channel,
        text: str,
        *,
        blocks: list[JSON] | None = None,
        attachments: list[JSON] | None = None,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        subtype: str | None = None,
        files: list[str] | None = None,
        user: str | None = None,
        metadata: JSON | None = None,
    ) -> Message:
        user = user or self.bot_user_id
        msg = Message(
            channel=channel.id,
            ts=self._next_ts(),
            user=user,
            text=text,
            blocks=self._with_ids(blocks) if blocks is not None else None,
            attachments=copy.deepcopy(attachments) if attachments is not None else None,
            thread_ts=thread_ts,
            reply_broadcast=reply_broadcast,
            bot_id=self.bot_id if user == self.bot_user_id and subtype is None else None,
            subtype=subtype,
            files=list(files or []),
            metadata=metadata,
        )
        channel.messages.append(msg)
        return msg

    def _system_message(self, channel: Channel, subtype: str, text: str, *, user: str | None = None) -> None:
        self._post(channel, text, subtype=subtype, user=user or self.bot_user_id)

    def _find_message(self, channel: Channel, ts: str) -> Message:
        msg = channel.message(ts)
        if msg is None:
            raise _Fail("message_not_found")
        return msg

    # -- methods: auth / team -------------------------------------------------------------------

    def _auth_test(self, args: JSON) -> JSON:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: JSON) -> JSON:
        """A one-time WebSocket URL for Socket Mode (the app-level token was checked by _dispatch)."""
        ticket = secrets.token_urlsafe(18)
        self._socket_tickets[ticket] = time.monotonic()
        ws_base = "ws://" + self.base_url.removeprefix("http://")
        return {"url": f"{ws_base}/socket/{ticket}"}

    def _team_info(self, args: JSON) -> JSON:
        return {"team": {"id": self.team_id, "name": self.team_name, "domain": self.team_domain}}

    # -- methods: conversations -----------------------------------------------------------------

    def _conversations_create(self, args: JSON) -> JSON:
        name = self._opt_str(args, "name") or ""
        problem = self._channel_name_error(name)
        if problem is not None:
            raise _Fail(problem)
        if any(c.name == name or name in c.previous_names for c in self.channels.values() if not c.is_im):
            raise _Fail("name_taken")
        is_private = self._bool(args, "is_private")
        now = int(time.time())
        channel = Channel(
            id=self._new_id("G" if is_private else "C"),
            name=name,
            creator=self.bot_user_id,
            created=now,
            members=[self.bot_user_id],
            is_private=is_private,
        )
        self.channels[channel.id] = channel
        self._system_message(channel, "channel_join", f"<@{self.bot_user_id}> has joined the channel")
        return {"channel": self._channel_json(channel)}

    def _conversations_info(self, args: JSON) -> JSON:
        channel = self._channel(args)
        return {"channel": self._channel_json(channel)}

    def _conversations_list(self, args: JSON) -> JSON:
        types = set((self._opt_str(args, "types") or "public_channel").split(","))
        unknown = types - {"public_channel", "private_channel", "mpim", "im"}
        if unknown:
            raise _invalid_args(f"unknown types: {', '.join(sorted(unknown))}")
        exclude_archived = self._bool(args, "exclude_archived")
        chosen = []
        for channel in self.channels.values():
            if channel.is_im:
                kind = "im"
            elif channel.is_private:
                kind = "private_channel"
            else:
                kind = "public_channel"
            if kind not in types or not self._visible(channel):
                continue
            if exclude_archived and channel.is_archived:
                continue
            chosen.append(channel)
        page, meta = self._paginate(chosen, args, 100, 1000)
        return {"channels": [self._channel_json(c) for c in page], "response_metadata": meta}

    def _conversations_members(self, args: JSON) -> JSON:
        channel = self._channel(args)
        page, meta = self._paginate(list(channel.members), args, 100, 1000)
        return {"members": page, "response_metadata": meta}

    def _conversations_open(self, args: JSON) -> JSON:
        if self._opt_str(args, "channel"):
            channel = self._channel(args)
            return {"channel": {"id": channel.id}}
        users = [u for u in (self._opt_str(args, "users") or "").split(",") if u]
        if not users:
            raise _Fail("users_list_not_supplied")
        if len(users) > 1:
            raise _Fail("not_enough_users")  # multi-person DMs are not modelled
        if users[0] not in self.users or users[0] == self.bot_user_id:
            raise _Fail("user_not_found")
        channel = self._im_with(users[0])
        return {"channel": {"id": channel.id}, "already_open": True}

    def _conversations_join(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if channel.is_private or channel.is_im:
            raise _Fail("method_not_supported_for_channel_type")
        self._require_unarchived(channel)
        if self.bot_user_id in channel.members:
            return {"channel": self._channel_json(channel), "warning": "already_in_channel"}
        channel.members.append(self.bot_user_id)
        self._system_message(channel, "channel_join", f"<@{self.bot_user_id}> has joined the channel")
        return {"channel": self._channel_json(channel)}

    def _conversations_invite(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if channel.is_im:
            raise _Fail("method_not_supported_for_channel_type")
        self._require_unarchived(channel)
        self._require_member(channel)
        users = [u.strip() for u in (self._opt_str(args, "users") or "").split(",") if u.strip()]
        if not users:
            raise _Fail("no_user")
        if len(users) > 1000:
            raise _Fail("too_many_users")
        force = self._bool(args, "force")
        errors: list[JSON] = []
        valid: list[str] = []
        for user_id in dict.fromkeys(users):
            if user_id == self.bot_user_id:
                errors.append({"user": user_id, "ok": False, "error": "cant_invite_self"})
            elif user_id not in self.users:
                errors.append({"user": user_id, "ok": False, "error": "user_not_found"})
            elif user_id in channel.members:
                errors.append({"user": user_id, "ok": False, "error": "already_in_channel"})
            else:
                valid.append(user_id)
        if errors and not force:
            raise _Fail(errors[0]["error"], errors=errors)
        for user_id in valid:
            channel.members.append(user_id)
            self._system_message(
                channel, "channel_join", f"<@{user_id}> has joined the channel", user=user_id
            )
        result: JSON = {"channel": self._channel_json(channel)}
        if errors:
            result["errors"] = errors
        return result

    def _conversations_set_topic(self, args: JSON) -> JSON:
        channel = self._channel(args)
        topic = self._opt_str(args, "topic") or ""
        if len(topic) > MAX_TOPIC:
            raise _Fail("too_long")
        self._require_unarchived(channel)
        self._require_member(channel)
        channel.topic = topic
        channel.topic_set_by = self.bot_user_id
        channel.topic_set_at = int(time.time())
        self._system_message(channel, "channel_topic", f"set the channel topic: {topic}")
        return {"channel": self._channel_json(channel)}

    def _conversations_set_purpose(self, args: JSON) -> JSON:
        channel = self._channel(args)
        purpose = self._opt_str(args, "purpose") or ""
        if len(purpose) > MAX_PURPOSE:
            raise _Fail("too_long")
        self._require_unarchived(channel)
        self._require_member(channel)
        channel.purpose = purpose
        channel.purpose_set_by = self.bot_user_id
        channel.purpose_set_at = int(time.time())
        self._system_message(channel, "channel_purpose", f"set the channel purpose: {purpose}")
        return {"channel": self._channel_json(channel)}

    def _conversations_rename(self, args: JSON) -> JSON:
        channel = self._channel(args)
        self._require_member(channel)
        self._require_unarchived(channel)
        name = self._opt_str(args, "name") or ""
        problem = self._channel_name_error(name)
        if problem is not None:
            raise _Fail(problem)
        if any(c.name == name for c in self.channels.values() if c is not channel and not c.is_im):
            raise _Fail("name_taken")
        if name != channel.name:
            channel.previous_names.append(channel.name)
            channel.name = name
            self._system_message(channel, "channel_name", f"renamed the channel to #{name}")
        return {"channel": self._channel_json(channel)}

    def _conversations_archive(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if channel.is_im:
            raise _Fail("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise _Fail("already_archived")
        if channel.is_general:
            raise _Fail("cant_archive_general")
        self._require_member(channel)
        self._system_message(channel, "channel_archive", "archived the channel")
        channel.is_archived = True
        return {}

    def _conversations_unarchive(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if not channel.is_archived:
            raise _Fail("not_archived")
        channel.is_archived = False
        self._system_message(channel, "channel_unarchive", "un-archived the channel")
        return {}

    def _conversations_history(self, args: JSON) -> JSON:
        channel = self._channel(args)
        self._require_member(channel)
        latest = self._opt_str(args, "latest")
        oldest = self._opt_str(args, "oldest")
        inclusive = self._bool(args, "inclusive")

        def in_range(msg: Message) -> bool:
            key = _ts_key(msg.ts)
            if latest:
                bound = _ts_key(latest)
                if key > bound or (key == bound and not inclusive):
                    return False
            if oldest:
                bound = _ts_key(oldest)
                if key < bound or (key == bound and not inclusive):
                    return False
            return True

        top = [m for m in reversed(channel.messages) if (not m.is_reply or m.reply_broadcast) and in_range(m)]
        page, meta = self._paginate(top, args, 100, 999)
        result: JSON = {
            "messages": [self.message_json(m) for m in page],
            "has_more": bool(meta["next_cursor"]),
            "pin_count": 0,
        }
        if meta["next_cursor"]:
            result["response_metadata"] = meta
        return result

    def _conversations_replies(self, args: JSON) -> JSON:
        channel = self._channel(args)
        self._require_member(channel)
        ts = self._req_str(args, "ts")
        msg = channel.message(ts)
        if msg is None:
            raise _Fail("thread_not_found")
        root_ts = msg.thread_ts if msg.is_reply and msg.thread_ts else msg.ts
        thread = [m for m in channel.messages if root_ts in (m.ts, m.thread_ts)]
        page, meta = self._paginate(thread, args, 1000, 1000)
        result: JSON = {
            "messages": [self.message_json(m) for m in page],
            "has_more": bool(meta["next_cursor"]),
        }
        if meta["next_cursor"]:
            result["response_metadata"] = meta
        return result

    # -- methods: chat --------------------------------------------------------------------------

    def _chat_post_message(self, args: JSON) -> JSON:
        target = self._opt_str(args, "channel")
        if not target:
            raise _Fail("channel_not_found")
        channel = self._lookup_post_channel(target)
        if channel is None:
            raise _Fail("channel_not_found")
        self._require_unarchived(channel)
        if self.bot_user_id not in channel.members and not (
            self.chat_write_public and not channel.is_private and not channel.is_im
        ):
            raise _Fail("not_in_channel")
        text, blocks, attachments = self._message_content(args, required=True)
        metadata = self._json_arg(args, "metadata", "invalid_metadata_format")
        if metadata is not None and not isinstance(metadata, dict):
            raise _Fail("invalid_metadata_format")
        msg = self._post(
            channel,
            text or "",
            blocks=blocks,
            attachments=attachments,
            thread_ts=self._opt_str(args, "thread_ts") or None,
            reply_broadcast=self._bool(args, "reply_broadcast"),
            metadata=metadata,
        )
        for key in ("username", "icon_emoji", "icon_url"):
            value = self._opt_str(args, key)
            if value:
                setattr(msg, key, value)
        return {"channel": channel.id, "ts": msg.ts, "message": self.message_json(msg)}

    def _chat_update(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = self._req_str(args, "ts")
        msg = self._find_message(channel, ts)
        if msg.user != self.bot_user_id or msg.subtype is not None:
            raise _Fail("cant_update_message")
        self._require_unarchived(channel)
        text, blocks, attachments = self._message_content(args, required=False)
        if text is None and blocks is None and attachments is None:
            raise _Fail("no_text")
        new_blocks = self._with_ids(blocks) if blocks is not None else msg.blocks
        new_text = text if text is not None else msg.text
        new_attachments = attachments if attachments is not None else msg.attachments
        if not new_text and not new_blocks and not new_attachments:
            raise _Fail("no_text")
        msg.edits.append(
            {
                "text": msg.text,
                "blocks": copy.deepcopy(msg.blocks),
                "attachments": copy.deepcopy(msg.attachments),
                "replaced_at": time.time(),
            }
        )
        msg.text = new_text
        msg.blocks = new_blocks
        msg.attachments = copy.deepcopy(new_attachments)
        msg.edited = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": self.message_json(msg)}

    def _chat_post_ephemeral(self, args: JSON) -> JSON:
        target = self._opt_str(args, "channel")
        channel = self._lookup_post_channel(target or "")
        if channel is None:
            raise _Fail("channel_not_found")
        user = self._user(args)
        self._require_unarchived(channel)
        if self.bot_user_id not in channel.members and not (
            self.chat_write_public and not channel.is_private and not channel.is_im
        ):
            raise _Fail("not_in_channel")
        if user.id not in channel.members:
            raise _Fail("user_not_in_channel")
        text, blocks, attachments = self._message_content(args, required=True)
        ephemeral = EphemeralMessage(
            channel=channel.id,
            user=user.id,
            ts=self._next_ts(),
            text=text or "",
            blocks=self._with_ids(blocks) if blocks is not None else None,
            attachments=attachments,
            thread_ts=self._opt_str(args, "thread_ts") or None,
        )
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.ts}

    def _chat_delete(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = self._req_str(args, "ts")
        msg = self._find_message(channel, ts)
        if msg.user != self.bot_user_id:
            raise _Fail("cant_delete_message")
        channel.messages.remove(msg)
        self.deleted_messages.append(msg)
        return {"channel": channel.id, "ts": ts}

    def _chat_get_permalink(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = self._req_str(args, "message_ts")
        msg = self._find_message(channel, ts)
        link = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{msg.ts.replace('.', '')}"
        if msg.is_reply and msg.thread_ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    # -- methods: users / usergroups ------------------------------------------------------------

    def _users_info(self, args: JSON) -> JSON:
        return {"user": self._user(args).to_api(self.team_id)}

    def _users_list(self, args: JSON) -> JSON:
        page, meta = self._paginate(list(self.users.values()), args, 200, 1000)
        return {
            "members": [u.to_api(self.team_id) for u in page],
            "cache_ts": int(time.time()),
            "response_metadata": meta,
        }

    def _users_lookup_by_email(self, args: JSON) -> JSON:
        email = self._req_str(args, "email").strip().lower()
        for user in self.users.values():
            if user.email is not None and user.email.lower() == email and not user.deleted:
                return {"user": user.to_api(self.team_id)}
        raise _Fail("users_not_found")

    def _usergroups_list(self, args: JSON) -> JSON:
        include_users = self._bool(args, "include_users")
        include_disabled = self._bool(args, "include_disabled")
        groups = [g for g in self.usergroups.values() if g.enabled or include_disabled]
        return {"usergroups": [g.to_api(self.team_id, include_users=include_users) for g in groups]}

    def _usergroups_users_list(self, args: JSON) -> JSON:
        group = self.usergroups.get(self._req_str(args, "usergroup"))
        if group is None or (not group.enabled and not self._bool(args, "include_disabled")):
            raise _Fail("no_such_subteam")
        return {"users": list(group.users)}

    # -- methods: reactions ---------------------------------------------------------------------

    def _reactions_add(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = self._req_str(args, "timestamp")
        name = self._req_str(args, "name")
        if not _EMOJI_NAME_RE.match(name):
            raise _Fail("invalid_name")
        msg = self._find_message(channel, ts)
        self._require_unarchived(channel)
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise _Fail("already_reacted")
        users.append(self.bot_user_id)
        return {}

    # -- methods: views -------------------------------------------------------------------------

    def _view_payload(self, args: JSON) -> JSON:
        view = self._json_arg(args, "view", "invalid_arguments")
        if view is None:
            raise _invalid_args("missing required field: view")
        errors = validate_view(view)
        if errors:
            raise _Fail("invalid_arguments", errors=errors, messages=[f"[ERROR] {e}" for e in errors])
        payload = cast(JSON, copy.deepcopy(view))
        payload["blocks"] = self._with_ids(payload["blocks"])
        return payload

    def _use_trigger(self, args: JSON) -> _Trigger:
        trigger_id = self._req_str(args, "trigger_id")
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise _Fail("invalid_trigger_id")
        if trigger.used:
            raise _Fail("exchanged_trigger_id")
        if time.monotonic() - trigger.issued > self.trigger_ttl:
            raise _Fail("expired_trigger_id")
        trigger.used = True
        return trigger

    def _new_view(self, payload: JSON, user_id: str, root: str | None, previous: str | None) -> View:
        view_id = self._new_id("V")
        view = View(
            id=view_id,
            team_id=self.team_id,
            user_id=user_id,
            type=str(payload["type"]),
            payload=payload,
            hash=f"{int(time.time())}.{secrets.token_hex(4)}",
            app_id=self.app_id,
            bot_id=self.bot_id,
            root_view_id=root or view_id,
            previous_view_id=previous,
        )
        self.views[view_id] = view
        return view

    def _views_open(self, args: JSON) -> JSON:
        payload = self._view_payload(args)
        trigger = self._use_trigger(args)
        for old in self._view_stacks.get(trigger.user_id, []):
            self.views[old].closed = True
        view = self._new_view(payload, trigger.user_id, None, None)
        self._view_stacks[trigger.user_id] = [view.id]
        return {"view": view.to_api()}

    def _views_push(self, args: JSON) -> JSON:
        payload = self._view_payload(args)
        trigger = self._use_trigger(args)
        stack = self._view_stacks.get(trigger.user_id, [])
        if not stack:
            raise _Fail("invalid_trigger_id")
        if len(stack) >= VIEW_STACK_LIMIT:
            raise _Fail("push_limit_reached")
        view = self._new_view(payload, trigger.user_id, stack[0], stack[-1])
        stack.append(view.id)
        return {"view": view.to_api()}

    def _views_update(self, args: JSON) -> JSON:
        view_id = self._opt_str(args, "view_id")
        external_id = self._opt_str(args, "external_id")
        if not view_id and not external_id:
            raise _invalid_args("missing required field: view_id or external_id")
        payload = self._view_payload(args)
        found: View | None = None
        if view_id:
            found = self.views.get(view_id)
        else:
            found = next(
                (v for v in self.views.values() if v.payload.get("external_id") == external_id), None
            )
        if found is None or found.closed:
            raise _Fail("not_found")
        expected = self._opt_str(args, "hash")
        if expected and expected != found.hash:
            raise _Fail("hash_conflict")
        found.payload = payload
        found.type = str(payload["type"])
        found.hash = f"{int(time.time())}.{secrets.token_hex(4)}"
        return {"view": found.to_api()}

    # -- methods: files -------------------------------------------------------------------------

    def _files_get_upload_url_external(self, args: JSON) -> JSON:
        filename = self._req_str(args, "filename")
        if self._opt_str(args, "length") in (None, ""):
            raise _invalid_args("missing required field: length")
        length = self._int(args, "length", 0)
        if length < 0:
            raise _invalid_args("must be a non-negative integer [json-pointer:/length]")
        key = secrets.token_urlsafe(16)
        f = SandboxFile(
            id=self._new_id("F"),
            name=filename,
            length=length,
            user=self.bot_user_id,
            created=int(time.time()),
            title=filename,
            alt_txt=self._opt_str(args, "alt_txt"),
            snippet_type=self._opt_str(args, "snippet_type"),
            upload_key=key,
        )
        self.files[f.id] = f
        self._uploads[key] = f.id
        return {"upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": f.id}

    def _files_complete_upload_external(self, args: JSON) -> JSON:
        items = self._json_arg(args, "files", "invalid_arguments")
        if items is None:
            raise _invalid_args("missing required field: files")
        if not isinstance(items, list) or not items:
            raise _invalid_args("must provide a non-empty array [json-pointer:/files]")
        if len(items) > 100:
            raise _Fail("file_uploads_exceed_limit")
        pending: list[tuple[SandboxFile, str | None]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise _invalid_args(f"missing required field: id [json-pointer:/files/{i}]")
            f = self.files.get(item["id"])
            if f is None or f.completed:
                raise _Fail("file_not_found")
            if f.data is None:
                raise _Fail("file_not_found", messages=[f"[ERROR] no bytes were uploaded for {f.id}"])
            title = item.get("title")
            pending.append((f, title if isinstance(title, str) and title else None))
        targets: list[Channel] = []
        channel_ids = [c for c in (self._opt_str(args, "channels") or "").split(",") if c]
        single = self._opt_str(args, "channel_id")
        if single:
            channel_ids.insert(0, single)
        for cid in dict.fromkeys(channel_ids):
            channel = self.channels.get(cid)
            if channel is None or not self._visible(channel):
                raise _Fail("channel_not_found")
            self._require_unarchived(channel)
            self._require_member(channel)
            targets.append(channel)
        thread_ts = self._opt_str(args, "thread_ts") or None
        if thread_ts and len(targets) != 1:
            raise _invalid_args("thread_ts requires exactly one channel")
        comment = self._opt_str(args, "initial_comment") or ""
        for f, title in pending:
            f.completed = True
            if title:
                f.title = title
            self._uploads.pop(f.upload_key, None)
        for channel in targets:
            msg = self._post(channel, comment, files=[f.id for f, _ in pending], thread_ts=thread_ts)
            for f, _ in pending:
                f.shares[channel.id] = msg.ts
        return {"files": [{"id": f.id, "title": f.title} for f, _ in pending]}

    def _files_info(self, args: JSON) -> JSON:
        f = self.files.get(self._req_str(args, "file"))
        if f is None or not f.completed:
            raise _Fail("file_not_found")
        return {"file": self._file_json(f), "comments": [], "response_metadata": {"next_cursor": ""}}

    # -- non-API routes -------------------------------------------------------------------------

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file_id = self._uploads.get(request.match_info["key"])
        f = self.files.get(file_id) if file_id else None
        if f is None or f.completed:
            return web.Response(status=404, text="upload URL not found or already completed")
        data: bytes | None = None
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader) and part.name == "file":
                    data = bytes(await part.read())
                    break
            if data is None:
                return web.Response(status=400, text="multipart upload without a 'file' part")
        else:
            data = await request.read()
        if len(data) != f.length:
            self._notify()
            return web.Response(
                status=400,
                text=f"length mismatch: files.getUploadURLExternal said {f.length} bytes, got {len(data)}",
            )
        f.data = data
        self._notify()
        return web.Response(status=200, text=f"OK - {len(data)}")

    async def _handle_file_download(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth[7:].strip() != self.bot_token:
            return web.Response(status=302, headers={"Location": f"https://{self.team_domain}.slack.com/"})
        f = self.files.get(request.match_info["file_id"])
        if f is None or f.data is None or not f.completed:
            return web.Response(status=404, text="file not found")
        return web.Response(body=f.data, content_type=f.mimetype)

    async def _handle_snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        ru = self._response_urls.get(request.match_info["rid"])
        raw = await request.read()
        if ru is None:
            return web.Response(status=404, text="no_such_url")
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._record_response(ru, {"raw": raw.decode(errors="replace")}, 400, "invalid_payload")
        if ru.uses >= RESPONSE_URL_MAX_USES:
            return self._record_response(ru, body, 404, "used_url")
        if time.monotonic() - ru.created > RESPONSE_URL_TTL:
            return self._record_response(ru, body, 404, "expired_url")
        error = self._apply_response(ru, body)
        if error is not None:
            return self._record_response(ru, body, 400, error)
        ru.uses += 1
        return self._record_response(ru, body, 200, None)

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        """The Socket Mode WebSocket: ``hello`` on connect, then acks (and anything else) in."""
        ticket = request.match_info["ticket"]
        issued = self._socket_tickets.pop(ticket, None)
        if issued is None or time.monotonic() - issued > SOCKET_TICKET_TTL:
            return web.Response(status=401, text="invalid_ticket")
        if self._stopping:
            return web.Response(status=503, text="shutting_down")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = SocketConnection(id=f"WS{next(self._ids):08d}", ticket=ticket, opened=time.time(), _ws=ws)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self.connected_sockets) + 1,
                    "debug_info": {
                        "host": "applink-sandbox",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            self.socket_connections.append(conn)
            self._notify()
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_socket_text(conn, frame.data)
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    conn.received.append({"binary": base64.b64encode(frame.data).decode()})
                    self._notify()
        finally:
            conn.closed = time.time()
            for envelope in self.socket_envelopes:
                pending = self._socket_pending.get(envelope.envelope_id)
                if envelope.connection_id == conn.id and pending is not None and not pending.done():
                    envelope.error = "connection_closed"
                    pending.set_result(None)
            self._notify()
        return ws

    def _on_socket_text(self, conn: SocketConnection, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            conn.received.append({"raw": data})
        elif "envelope_id" in frame and "type" not in frame:
            self.socket_acks.append(frame)
            envelope_id = frame.get("envelope_id")
            pending = self._socket_pending.get(envelope_id) if isinstance(envelope_id, str) else None
            envelope = next((e for e in self.socket_envelopes if e.envelope_id == envelope_id), None)
            if envelope is not None and not envelope.acked and pending is not None and not pending.done():
                payload = frame.get("payload")
                envelope.acked = True
                envelope.ack_payload = payload if isinstance(payload, dict) else None
                envelope.ack_time = time.time()
                pending.set_result(None)
        else:
            conn.received.append(frame)
        self._notify()

    def _record_response(
        self, ru: _ResponseUrl, body: JSON, status: int, error: str | None, *, via: str = "response_url"
    ) -> web.Response:
        self.responses.append(
            ResponsePost(
                id=ru.id,
                kind=ru.kind,
                channel_id=ru.channel_id,
                user_id=ru.user_id,
                time=time.time(),
                status=status,
                body=body,
                via=via,
                error=error,
            )
        )
        self._notify()
        return web.Response(status=status, text=error or "ok")

    def _apply_response(self, ru: _ResponseUrl, body: JSON, *, via: str = "response_url") -> str | None:
        """Apply a response_url / ack message the way Slack renders it; return an error or None."""
        delete = _truthy(body.get("delete_original"))
        text = body.get("text")
        text = text if isinstance(text, str) else ""
        blocks = body.get("blocks")
        attachments = body.get("attachments")
        if blocks is not None and not isinstance(blocks, list):
            return "invalid_blocks_format"
        if not delete and not text and not blocks and not attachments:
            return "no_text"
        if blocks is not None and validate_message_blocks(blocks):
            return "invalid_blocks"
        text = text[:MAX_MESSAGE_TEXT]
        channel = self.channels.get(ru.channel_id) if ru.channel_id else None
        thread_ts = body.get("thread_ts") if isinstance(body.get("thread_ts"), str) else None
        if (delete or _truthy(body.get("replace_original"))) and ru.message_ts is not None and channel:
            if ru.is_ephemeral:
                eph = next((e for e in self.ephemerals if e.ts == ru.message_ts), None)
                if eph is not None:
                    if delete:
                        self.ephemerals.remove(eph)
                    else:
                        eph.text = text
                        eph.blocks = self._with_ids(blocks) if blocks is not None else None
                return None
            msg = channel.message(ru.message_ts)
            if msg is None:
                return "message_not_found"
            if delete:
                channel.messages.remove(msg)
                self.deleted_messages.append(msg)
                return None
            msg.edits.append(
                {
                    "text": msg.text,
                    "blocks": copy.deepcopy(msg.blocks),
                    "attachments": copy.deepcopy(msg.attachments),
                    "replaced_at": time.time(),
                }
            )
            msg.text = text
            msg.blocks = self._with_ids(blocks) if blocks is not None else None
            msg.attachments = copy.deepcopy(attachments) if isinstance(attachments, list) else None
            msg.edited = {"user": self.bot_user_id, "ts": self._next_ts()}
            return None
        if delete:
            return None
        if channel is None:
            return "channel_not_found"
        if body.get("response_type") == "in_channel":
            self._post(
                channel,
                text,
                blocks=blocks,
                attachments=attachments if isinstance(attachments, list) else None,
                thread_ts=thread_ts,
            )
        else:
            self.ephemerals.append(
                EphemeralMessage(
                    channel=channel.id,
                    user=ru.user_id,
                    ts=self._next_ts(),
                    text=text,
                    blocks=self._with_ids(blocks) if blocks is not None else None,
                    attachments=attachments if isinstance(attachments, list) else None,
                    thread_ts=thread_ts,
                    source=via,
                )
            )
        return None

    def _apply_ack(self, kind: str, channel_id: str, user_id: str, body: JSON) -> None:
        """Render a slash command's synchronous response body, as Slack does."""
        ru = _ResponseUrl(
            id=f"ack-{next(self._ids)}",
            kind=kind,
            channel_id=channel_id,
            user_id=user_id,
            created=time.monotonic(),
        )
        error = self._apply_response(ru, body, via="ack")
        self._record_response(ru, body, 200 if error is None else 400, error, via="ack")


def _interactive_elements(block: Mapping[str, Any]) -> Iterator[JSON]:
    kind = block.get("type")
    candidates: list[Any] = []
    if kind == "actions" and isinstance(block.get("elements"), list):
        candidates = list(block["elements"])
    elif kind == "section":
        candidates = [block.get("accessory")]
    elif kind == "input":
        candidates = [block.get("element")]
    for el in candidates:
        if isinstance(el, dict) and el.get("type") in _INTERACTIVE_ELEMENTS:
            yield el


# --------------------------------------------------------------------------------------------
# Driving a bot as Slack would
# --------------------------------------------------------------------------------------------


@dataclass
class DriverResponse:
    """What the bot answered: the HTTP response, or (Socket Mode) the ack as a 200 with the ack
    payload as a JSON body (empty without payload); a missing ack is a 504 whose body names why."""

    status: int
    body: str
    headers: dict[str, str]
    #: Socket Mode only: the envelope sent, with its ack
    envelope: SocketEnvelope | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _SlackSide(abc.ABC):
    """Builds what Slack sends to a bot (commands, interactions, events) from the sandbox's state
    and applies acks as Slack does; subclasses deliver it (signed HTTP or Socket Mode)."""

    sandbox: SlackSandbox
    verification_token: str = "sandbox-verification-token"

    @abc.abstractmethod
    async def _deliver_command(self, fields: dict[str, str]) -> DriverResponse:
        """Deliver it to the bot (signed HTTP or Socket Mode)."""

    @abc.abstractmethod
    async def _deliver_interactive(self, payload: JSON) -> DriverResponse:
        """Deliver it to the bot (signed HTTP or Socket Mode)."""

    @abc.abstractmethod
    async def _deliver_event(
        self, envelope: JSON, retry_num: int | None, retry_reason: str | None
    ) -> DriverResponse:
        """Deliver it to the bot (signed HTTP or Socket Mode)."""

    def _user(self, user_id: str) -> User:
        user = self.sandbox.users.get(user_id)
        if user is None:
            raise LookupError(f"unknown user {user_id}")
        return user

    def _default_channel(self) -> Channel:
        channel = self.sandbox.incident_channel or self.sandbox.channel_by_name("general")
        if channel is None:
            raise LookupError("no default channel; pass channel_id")
        return channel

    async def slash_command(
        self, command: str, text: str = "", *, user_id: str = DEFAULT_USER, channel_id: str | None = None
    ) -> DriverResponse:
        sb = self.sandbox
        user = self._user(user_id)
        channel = sb.channels[channel_id] if channel_id else self._default_channel()
        fields = {
            "token": self.verification_token,
            "team_id": sb.team_id,
            "team_domain": sb.team_domain,
            "channel_id": channel.id,
            "channel_name": "directmessage" if channel.is_im else channel.name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": sb.app_id,
            "is_enterprise_install": "false",
            "response_url": sb.new_response_url("command", user_id=user.id, channel_id=channel.id),
            "trigger_id": sb.issue_trigger_id(user.id),
        }
        result = await self._deliver_command(fields)
        if result.status == 200 and result.body.strip():
            try:
                parsed = json.loads(result.body)
            except ValueError:
                parsed = {"text": result.body}
            if isinstance(parsed, dict) and (parsed.get("text") or parsed.get("blocks")):
                sb._apply_ack("command", channel.id, user.id, parsed)
        return result

    def _find_action(
        self, action_id: str, user_id: str, channel_id: str | None, message_ts: str | None
    ) -> tuple[JSON, JSON, Message | EphemeralMessage]:
        sb = self.sandbox
        candidates: list[Message | EphemeralMessage] = []
        channels = [sb.channels[channel_id]] if channel_id else list(sb.channels.values())
        for channel in channels:
            candidates.extend(channel.messages)
        candidates.extend(e for e in sb.ephemerals if e.user == user_id)
        candidates.sort(key=lambda m: _ts_key(m.ts), reverse=True)
        seen: list[str] = []
        for msg in candidates:
            if message_ts is not None and msg.ts != message_ts:
                continue
            if channel_id is not None and msg.channel != channel_id:
                continue
            for block in msg.blocks or []:
                for element in _interactive_elements(block):
                    seen.append(str(element.get("action_id")))
                    if element.get("action_id") == action_id:
                        return block, element, msg
        raise LookupError(f"no stored message has action_id {action_id!r}; seen: {sorted(set(seen))}")

    async def click(
        self,
        action_id: str,
        *,
        user_id: str = DEFAULT_USER,
        channel_id: str | None = None,
        message_ts: str | None = None,
        value: str | None = None,
    ) -> DriverResponse:
        """Click an element of a stored message (newest match first) and send ``block_actions``.

        ``value`` selects an option of a select/overflow menu; for a button it replaces the
        button's value (to test tampered payloads).
        """
        sb = self.sandbox
        user = self._user(user_id)
        block, element, msg = self._find_action(action_id, user_id, channel_id, message_ts)
        channel = sb.channels[msg.channel]
        is_ephemeral = isinstance(msg, EphemeralMessage)
        action: JSON = {
            "action_id": action_id,
            "block_id": block.get("block_id"),
            "type": element.get("type"),
            "action_ts": f"{time.time():.6f}",
        }
        kind = element.get("type")
        if kind == "button":
            action["text"] = copy.deepcopy(element.get("text"))
            chosen = value if value is not None else element.get("value")
            if chosen is not None:
                action["value"] = chosen
            if "style" in element:
                action["style"] = element["style"]
        elif kind in ("static_select", "overflow", "radio_buttons"):
            options = list(element.get("options") or [])
            for group in element.get("option_groups") or []:
                options.extend(group.get("options") or [])
            picked = next((o for o in options if value is None or o.get("value") == value), None)
            if picked is None:
                raise LookupError(f"{action_id!r} has no option with value {value!r}")
            action["selected_option"] = copy.deepcopy(picked)
        elif kind == "users_select":
            action["selected_user"] = value or user.id
        elif kind == "conversations_select":
            action["selected_conversation"] = value or channel.id
        elif kind == "channels_select":
            action["selected_channel"] = value or channel.id
        elif kind == "datepicker":
            action["selected_date"] = value or time.strftime("%Y-%m-%d")
        elif value is not None:
            action["value"] = value
        payload: JSON = {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": sb.team_id},
            "api_app_id": sb.app_id,
            "token": self.verification_token,
            "container": {
                "type": "message",
                "message_ts": msg.ts,
                "channel_id": channel.id,
                "is_ephemeral": is_ephemeral,
            },
            "trigger_id": sb.issue_trigger_id(user.id),
            "team": {"id": sb.team_id, "domain": sb.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": "directmessage" if channel.is_im else channel.name},
            "state": {"values": {}},
            "response_url": sb.new_response_url(
                "block_actions",
                user_id=user.id,
                channel_id=channel.id,
                message_ts=msg.ts,
                is_ephemeral=is_ephemeral,
            ),
            "actions": [action],
        }
        if isinstance(msg, Message):
            payload["message"] = sb.message_json(msg)
        return await self._deliver_interactive(payload)

    async def submit_view(
        self,
        view_id: str,
        values: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        user_id: str | None = None,
    ) -> DriverResponse:
        """Submit an open modal. ``values`` maps block_id -> action_id -> a plain value (str / list)
        or a ready state dict; plain values are shaped after the element type."""
        sb = self.sandbox
        view = sb.views.get(view_id)
        if view is None or view.closed:
            raise LookupError(f"no open view {view_id}")
        user = self._user(user_id or view.user_id)
        view.state_values = _state_values(view, values or {})
        payload: JSON = {
            "type": "view_submission",
            "team": {"id": sb.team_id, "domain": sb.team_domain},
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": sb.team_id},
            "api_app_id": sb.app_id,
            "token": self.verification_token,
            "trigger_id": sb.issue_trigger_id(user.id),
            "view": view.to_api(),
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        result = await self._deliver_interactive(payload)
        if result.status == 200:
            _apply_view_ack(sb, view, result.body)
        return result

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> DriverResponse:
        """Send an Events API ``event_callback`` envelope around ``event``."""
        sb = self.sandbox
        envelope = {
            "token": self.verification_token,
            "team_id": sb.team_id,
            "api_app_id": sb.app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": sb.team_id,
                    "user_id": sb.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": secrets.token_hex(16),
        }
        return await self._deliver_event(envelope, retry_num, retry_reason)

    async def reaction_added(
        self, reaction: str, *, channel_id: str, ts: str, user_id: str = DEFAULT_USER
    ) -> DriverResponse:
        """A user reacts to a stored message: store the reaction, then send ``reaction_added``."""
        msg = self.sandbox.add_reaction(channel_id, ts, reaction, user_id)
        event = {
            "type": "reaction_added",
            "user": user_id,
            "reaction": reaction,
            "item_user": msg.user,
            "item": {"type": "message", "channel": channel_id, "ts": ts},
            "event_ts": f"{time.time():.6f}",
        }
        return await self.send_event(event)

    async def user_message(
        self,
        channel_id: str,
        text: str,
        *,
        user_id: str = DEFAULT_USER,
        thread_ts: str | None = None,
        event_type: str = "message",
    ) -> DriverResponse:
        """A user posts a message: store it, then send a ``message`` (or ``app_mention``) event."""
        msg = self.sandbox.add_message(channel_id, text, user_id=user_id, thread_ts=thread_ts)
        channel = self.sandbox.channels[msg.channel]
        event: JSON = {
            "type": event_type,
            "channel": channel.id,
            "user": user_id,
            "text": text,
            "ts": msg.ts,
            "event_ts": msg.ts,
            "team": self.sandbox.team_id,
        }
        if event_type == "message":
            event["channel_type"] = "im" if channel.is_im else ("group" if channel.is_private else "channel")
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        return await self.send_event(event)


class SlackDriver(_SlackSide):
    """Sends signed Slack requests (commands, interactions, events) to a bot's ``/slack/events``."""

    def __init__(
        self, sandbox: SlackSandbox, url: str, signing_secret: str, session: aiohttp.ClientSession
    ) -> None:
        self.sandbox = sandbox
        self.url = url
        self.signing_secret = signing_secret
        self.session = session
        self.verification_token = "sandbox-verification-token"

    async def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DriverResponse:
        """POST a raw body signed as Slack does (override ``timestamp``/``signature`` to test rejection)."""
        ts = int(time.time()) if timestamp is None else timestamp
        sent = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **sign(self.signing_secret, body, ts),
        }
        if signature is not None:
            sent["X-Slack-Signature"] = signature
        sent.update(headers or {})
        async with self.session.post(self.url, data=body, headers=sent) as resp:
            text = await resp.text()
            return DriverResponse(status=resp.status, body=text, headers=dict(resp.headers))

    async def _post_form(self, fields: Mapping[str, str]) -> DriverResponse:
        body = urllib.parse.urlencode(fields).encode()
        return await self.post(body, "application/x-www-form-urlencoded")

    async def _deliver_command(self, fields: dict[str, str]) -> DriverResponse:
        return await self._post_form(fields)

    async def _deliver_interactive(self, payload: JSON) -> DriverResponse:
        return await self._post_form({"payload": json.dumps(payload)})

    async def _deliver_event(
        self, envelope: JSON, retry_num: int | None, retry_reason: str | None
    ) -> DriverResponse:
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        return await self.post(json.dumps(envelope).encode(), "application/json", headers=headers)


class SocketModeDriver(_SlackSide):
    """``SlackDriver`` over Socket Mode: the same commands, clicks, view submissions and events,
    sent as envelopes on the bot's WebSocket (no signatures), each waiting up to ``ack_timeout``
    for its ack. Slash command acks with text/blocks are rendered and recorded as responses and
    view_submission acks applied to the modal, as Slack does; block_actions and events_api ack
    payloads are only recorded on the envelope (Slack ignores them)."""

    def __init__(self, sandbox: SlackSandbox, *, ack_timeout: float = SOCKET_ACK_TIMEOUT) -> None:
        self.sandbox = sandbox
        self.ack_timeout = ack_timeout
        self.verification_token = "sandbox-verification-token"

    async def _send(
        self,
        kind: str,
        payload: JSON,
        *,
        accepts_response_payload: bool,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> DriverResponse:
        envelope = await self.sandbox.send_envelope(
            kind,
            payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            timeout=self.ack_timeout,
        )
        if not envelope.acked:
            return DriverResponse(
                status=504, body=envelope.error or "ack_timeout", headers={}, envelope=envelope
            )
        body = json.dumps(envelope.ack_payload) if envelope.ack_payload is not None else ""
        return DriverResponse(status=200, body=body, headers={}, envelope=envelope)

    async def _deliver_command(self, fields: dict[str, str]) -> DriverResponse:
        return await self._send("slash_commands", dict(fields), accepts_response_payload=True)

    async def _deliver_interactive(self, payload: JSON) -> DriverResponse:
        accepts = payload.get("type") in ("view_submission", "block_suggestion")
        return await self._send("interactive", payload, accepts_response_payload=accepts)

    async def _deliver_event(
        self, envelope: JSON, retry_num: int | None, retry_reason: str | None
    ) -> DriverResponse:
        return await self._send(
            "events_api",
            envelope,
            accepts_response_payload=False,
            retry_attempt=retry_num if retry_num is not None else 0,
            retry_reason=(retry_reason or "http_timeout") if retry_num is not None else "",
        )


def _state_values(view: View, values: Mapping[str, Mapping[str, Any]]) -> JSON:
    elements: dict[tuple[str, str], JSON] = {}
    for block in view.blocks:
        for element in _interactive_elements(block):
            elements[(str(block.get("block_id")), str(element.get("action_id")))] = element
    state: JSON = {}
    for block_id, actions in values.items():
        for action_id, value in actions.items():
            target = elements.get((block_id, action_id))
            if target is None:
                raise LookupError(f"view {view.id} has no element {block_id}/{action_id}")
            kind = str(target.get("type"))
            entry: JSON
            if isinstance(value, dict):
                entry = {"type": kind, **value}
            elif kind in ("static_select", "radio_buttons", "external_select"):
                options = list(target.get("options") or [])
                picked = next((o for o in options if o.get("value") == value), {"value": value})
                entry = {"type": kind, "selected_option": picked}
            elif kind in ("multi_static_select", "checkboxes"):
                wanted = list(value) if isinstance(value, list | tuple) else [value]
                options = list(target.get("options") or [])
                entry = {"type": kind, "selected_options": [o for o in options if o.get("value") in wanted]}
            elif kind == "users_select":
                entry = {"type": kind, "selected_user": value}
            elif kind == "multi_users_select":
                entry = {"type": kind, "selected_users": list(value)}
            elif kind == "conversations_select":
                entry = {"type": kind, "selected_conversation": value}
            elif kind == "channels_select":
                entry = {"type": kind, "selected_channel": value}
            elif kind == "datepicker":
                entry = {"type": kind, "selected_date": value}
            elif kind == "timepicker":
                entry = {"type": kind, "selected_time": value}
            else:
                entry = {"type": kind, "value": value}
            state.setdefault(block_id, {})[action_id] = entry
    return state


def _apply_view_ack(sb: SlackSandbox, view: View, body: str) -> None:
    """Close / update / push the modal according to a view_submission ack, as Slack does."""
    try:
        ack = json.loads(body) if body.strip() else {}
    except ValueError:
        ack = {}
    action = ack.get("response_action") if isinstance(ack, dict) else None
    stack = sb._view_stacks.get(view.user_id, [])
    if action == "errors":
        return
    if action in ("update", "push"):
        if not isinstance(ack.get("view"), dict) or validate_view(ack["view"]):
            return  # Slack shows an error and leaves the modal as it was
        payload = copy.deepcopy(ack["view"])
        payload["blocks"] = sb._with_ids(payload["blocks"])
        if action == "update":
            view.payload = payload
            view.state_values = {}
        else:
            pushed = sb._new_view(payload, view.user_id, view.root_view_id, view.id)
            stack.append(pushed.id)
        sb._notify()
        return
    closing = list(stack) if action == "clear" else [view.id]
    for vid in closing:
        sb.views[vid].closed = True
        if vid in stack:
            stack.remove(vid)
    sb._notify()
