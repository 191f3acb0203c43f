"""``chat.*`` and ``reactions.add``."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.slack.limits import EMOJI_NAME_RE
from sandbox.slack.models import EphemeralMessage
from sandbox.slack.wire import SlackError, bool_arg, json_arg, opt_str, req_str
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class ChatApi(Workspace):
    """Posting, updating, deleting and linking messages, ephemeral messages and reactions."""

    def _chat_post_message(self, args: JSON) -> JSON:
        target = opt_str(args, "channel")
        if not target:
            raise SlackError("channel_not_found")
        channel = self._lookup_post_channel(target)
        if channel is None:
            raise SlackError("channel_not_found")
        self._require_unarchived(channel)
        if self.bot_user_id not in channel.members and not (
            self.chat_write_public and not channel.is_private and not channel.is_im
        ):
            raise SlackError("not_in_channel")
        text, blocks, attachments = self._message_content(args, required=True)
        metadata = json_arg(args, "metadata", "invalid_metadata_format")
        if metadata is not None and not isinstance(metadata, dict):
            raise SlackError("invalid_metadata_format")
        msg = self._post(
            channel,
            text or "",
            blocks=blocks,
            attachments=attachments,
            thread_ts=opt_str(args, "thread_ts") or None,
            reply_broadcast=bool_arg(args, "reply_broadcast"),
            metadata=metadata,
        )
        for key in ("username", "icon_emoji", "icon_url"):
            value = opt_str(args, key)
            if value:
                setattr(msg, key, value)
        return {"channel": channel.id, "ts": msg.ts, "message": self.message_json(msg)}

    def _chat_update(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = req_str(args, "ts")
        msg = self._find_message(channel, ts)
        if msg.user != self.bot_user_id or msg.subtype is not None:
            raise SlackError("cant_update_message")
        self._require_unarchived(channel)
        text, blocks, attachments = self._message_content(args, required=False)
        if text is None and blocks is None and attachments is None:
            raise SlackError("no_text")
        new_blocks = self._with_ids(blocks) if blocks is not None else msg.blocks
        new_text = text if text is not None else msg.text
        new_attachments = attachments if attachments is not None else msg.attachments
        if not new_text and not new_blocks and not new_attachments:
            raise SlackError("no_text")
        self._keep_previous_version(msg)
        msg.text = new_text
        msg.blocks = new_blocks
        msg.attachments = copy.deepcopy(new_attachments)
        msg.edited = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": self.message_json(msg)}

    def _chat_post_ephemeral(self, args: JSON) -> JSON:
        target = opt_str(args, "channel")
        channel = self._lookup_post_channel(target or "")
        if channel is None:
            raise SlackError("channel_not_found")
        user = self._user(args)
        self._require_unarchived(channel)
        if self.bot_user_id not in channel.members and not (
            self.chat_write_public and not channel.is_private and not channel.is_im
        ):
            raise SlackError("not_in_channel")
        if user.id not in channel.members:
            raise SlackError("user_not_in_channel")
        text, blocks, attachments = self._message_content(args, required=True)
        ephemeral = EphemeralMessage(
            channel=channel.id,
            user=user.id,
            ts=self._next_ts(),
            text=text or "",
            blocks=self._with_ids(blocks) if blocks is not None else None,
            attachments=attachments,
            thread_ts=opt_str(args, "thread_ts") or None,
        )
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.ts}

    def _chat_delete(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = req_str(args, "ts")
        msg = self._find_message(channel, ts)
        if msg.user != self.bot_user_id:
            raise SlackError("cant_delete_message")
        channel.messages.remove(msg)
        self.deleted_messages.append(msg)
        return {"channel": channel.id, "ts": ts}

    def _chat_get_permalink(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = req_str(args, "message_ts")
        msg = self._find_message(channel, ts)
        link = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{msg.ts.replace('.', '')}"
        if msg.is_reply and msg.thread_ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def _reactions_add(self, args: JSON) -> JSON:
        channel = self._channel(args)
        ts = req_str(args, "timestamp")
        name = req_str(args, "name")
        if not EMOJI_NAME_RE.match(name):
            raise SlackError("invalid_name")
        msg = self._find_message(channel, ts)
        self._require_unarchived(channel)
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise SlackError("already_reacted")
        users.append(self.bot_user_id)
        return {}
