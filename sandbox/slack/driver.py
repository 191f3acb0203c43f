"""Playing Slack's side towards a bot: slash commands, clicks, view submissions and events,
sent as signed HTTP requests (``SlackDriver``) or Socket Mode envelopes (``SocketModeDriver``)."""

from __future__ import annotations

import abc
import copy
import json
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from sandbox.slack.app import SlackSandbox
from sandbox.slack.blockkit import interactive_elements
from sandbox.slack.limits import DEFAULT_USER, SOCKET_ACK_TIMEOUT
from sandbox.slack.models import Channel, EphemeralMessage, Message, SocketEnvelope, User, View
from sandbox.slack.wire import sign, ts_key

JSON = dict[str, Any]


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
        candidates.sort(key=lambda m: ts_key(m.ts), reverse=True)
        seen: list[str] = []
        for msg in candidates:
            if message_ts is not None and msg.ts != message_ts:
                continue
            if channel_id is not None and msg.channel != channel_id:
                continue
            for block in msg.blocks or []:
                for element in interactive_elements(block):
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
        action.update(_chosen(element, action_id, value, user, channel))
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

    async def global_shortcut(self, callback_id: str, *, user_id: str = DEFAULT_USER) -> DriverResponse:
        """The user runs a global shortcut (from the composer's shortcut menu or search)."""
        sb = self.sandbox
        user = self._user(user_id)
        payload: JSON = {
            "type": "shortcut",
            "token": self.verification_token,
            "action_ts": f"{time.time():.6f}",
            "team": {"id": sb.team_id, "domain": sb.team_domain},
            "user": {"id": user.id, "username": user.name, "team_id": sb.team_id},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": sb.issue_trigger_id(user.id),
        }
        return await self._deliver_interactive(payload)

    async def message_shortcut(
        self, callback_id: str, *, channel_id: str, message_ts: str, user_id: str = DEFAULT_USER
    ) -> DriverResponse:
        """The user runs a message shortcut on a stored message (its ``…`` menu)."""
        sb = self.sandbox
        user = self._user(user_id)
        channel = sb.channels[channel_id]
        msg = channel.message(message_ts)
        if msg is None:
            raise LookupError(f"no message {message_ts} in {channel_id}")
        payload: JSON = {
            "type": "message_action",
            "token": self.verification_token,
            "action_ts": f"{time.time():.6f}",
            "team": {"id": sb.team_id, "domain": sb.team_domain},
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": sb.team_id},
            "channel": {"id": channel.id, "name": channel.name},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": sb.issue_trigger_id(user.id),
            "response_url": sb.new_response_url("message_action", user_id=user.id, channel_id=channel.id),
            "message_ts": msg.ts,
            "message": sb.message_json(msg),
        }
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
            sb._apply_view_ack(view, result.body)
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


def _chosen(element: JSON, action_id: str, value: str | None, user: User, channel: Channel) -> JSON:
    """What a ``block_actions`` action says was chosen, shaped after the element type."""
    kind = element.get("type")
    chosen: JSON = {}
    if kind == "button":
        chosen["text"] = copy.deepcopy(element.get("text"))
        picked_value = value if value is not None else element.get("value")
        if picked_value is not None:
            chosen["value"] = picked_value
        if "style" in element:
            chosen["style"] = element["style"]
    elif kind in ("static_select", "overflow", "radio_buttons"):
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options.extend(group.get("options") or [])
        picked = next((o for o in options if value is None or o.get("value") == value), None)
        if picked is None:
            raise LookupError(f"{action_id!r} has no option with value {value!r}")
        chosen["selected_option"] = copy.deepcopy(picked)
    elif kind == "users_select":
        chosen["selected_user"] = value or user.id
    elif kind == "conversations_select":
        chosen["selected_conversation"] = value or channel.id
    elif kind == "channels_select":
        chosen["selected_channel"] = value or channel.id
    elif kind == "datepicker":
        chosen["selected_date"] = value or time.strftime("%Y-%m-%d")
    elif value is not None:
        chosen["value"] = value
    return chosen


def _state_values(view: View, values: Mapping[str, Mapping[str, Any]]) -> JSON:
    elements: dict[tuple[str, str], JSON] = {}
    for block in view.blocks:
        for element in interactive_elements(block):
            elements[(str(block.get("block_id")), str(element.get("action_id")))] = element
    state: JSON = {}
    for block_id, actions in values.items():
        for action_id, value in actions.items():
            target = elements.get((block_id, action_id))
            if target is None:
                raise LookupError(f"view {view.id} has no element {block_id}/{action_id}")
            state.setdefault(block_id, {})[action_id] = _state_entry(target, value)
    return state


#: Element type -> the state key a plain value goes under, for the one-value elements.
_SINGLE_VALUE_KEYS: Final[Mapping[str, str]] = {
    "users_select": "selected_user",
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
}


def _state_entry(target: JSON, value: Any) -> JSON:
    """One element's ``state.values`` entry: a ready dict as given, else shaped after its type."""
    kind = str(target.get("type"))
    if isinstance(value, dict):
        return {"type": kind, **value}
    if kind in ("static_select", "radio_buttons", "external_select"):
        options = list(target.get("options") or [])
        picked = next((o for o in options if o.get("value") == value), {"value": value})
        return {"type": kind, "selected_option": picked}
    if kind in ("multi_static_select", "checkboxes"):
        wanted = list(value) if isinstance(value, list | tuple) else [value]
        options = list(target.get("options") or [])
        return {"type": kind, "selected_options": [o for o in options if o.get("value") in wanted]}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(value)}
    if kind in _SINGLE_VALUE_KEYS:
        return {"type": kind, _SINGLE_VALUE_KEYS[kind]: value}
    return {"type": kind, "value": value}
