"""``response_url`` posts and slash command acks, rendered the way Slack renders them."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from aiohttp import web

from sandbox.slack.blockkit import validate_message_blocks
from sandbox.slack.limits import MAX_MESSAGE_TEXT, RESPONSE_URL_MAX_USES, RESPONSE_URL_TTL
from sandbox.slack.models import Channel, EphemeralMessage, ResponsePost, ResponseUrl
from sandbox.slack.wire import truthy
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class ResponseUrls(Workspace):
    """Follow-ups posted to a ``response_url`` and slash command ack bodies, applied to the
    workspace (replace, delete, in-channel or ephemeral) and recorded in ``responses``."""

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

    def _record_response(
        self, ru: ResponseUrl, body: JSON, status: int, error: str | None, *, via: str = "response_url"
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

    def _apply_response(self, ru: ResponseUrl, body: JSON, *, via: str = "response_url") -> str | None:
        """Apply a response_url / ack message the way Slack renders it; return an error or None."""
        delete = truthy(body.get("delete_original"))
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
        if (delete or truthy(body.get("replace_original"))) and ru.message_ts is not None and channel:
            return self._change_original(
                ru, ru.message_ts, channel, delete=delete, text=text, blocks=blocks, attachments=attachments
            )
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

    def _change_original(
        self,
        ru: ResponseUrl,
        message_ts: str,
        channel: Channel,
        *,
        delete: bool,
        text: str,
        blocks: Any,
        attachments: Any,
    ) -> str | None:
        """``replace_original`` / ``delete_original``: change the message the URL came from."""
        if ru.is_ephemeral:
            eph = next((e for e in self.ephemerals if e.ts == message_ts), None)
            if eph is not None:
                if delete:
                    self.ephemerals.remove(eph)
                else:
                    eph.text = text
                    eph.blocks = self._with_ids(blocks) if blocks is not None else None
            return None
        msg = channel.message(message_ts)
        if msg is None:
            return "message_not_found"
        if delete:
            channel.messages.remove(msg)
            self.deleted_messages.append(msg)
            return None
        self._keep_previous_version(msg)
        msg.text = text
        msg.blocks = self._with_ids(blocks) if blocks is not None else None
        msg.attachments = copy.deepcopy(attachments) if isinstance(attachments, list) else None
        msg.edited = {"user": self.bot_user_id, "ts": self._next_ts()}
        return None

    def _apply_ack(self, kind: str, channel_id: str, user_id: str, body: JSON) -> None:
        """Render a slash command's synchronous response body, as Slack does."""
        ru = ResponseUrl(
            id=f"ack-{next(self._ids)}",
            kind=kind,
            channel_id=channel_id,
            user_id=user_id,
            created=time.monotonic(),
        )
        error = self._apply_response(ru, body, via="ack")
        self._record_response(ru, body, 200 if error is None else 400, error, via="ack")
