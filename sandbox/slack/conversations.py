"""``conversations.*``: creating, listing, joining, inviting, renaming, archiving, reading history."""

from __future__ import annotations

import time
from typing import Any

from sandbox.slack.limits import MAX_PURPOSE, MAX_TOPIC
from sandbox.slack.models import Channel, Message
from sandbox.slack.wire import (
    SlackError,
    bool_arg,
    channel_name_error,
    invalid_args,
    opt_str,
    paginate,
    req_str,
    ts_key,
)
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class ConversationsApi(Workspace):
    """``conversations.*`` with Slack's visibility, membership and archive rules."""

    def _conversations_create(self, args: JSON) -> JSON:
        name = opt_str(args, "name") or ""
        problem = channel_name_error(name)
        if problem is not None:
            raise SlackError(problem)
        if any(c.name == name or name in c.previous_names for c in self.channels.values() if not c.is_im):
            raise SlackError("name_taken")
        is_private = bool_arg(args, "is_private")
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
        types = set((opt_str(args, "types") or "public_channel").split(","))
        unknown = types - {"public_channel", "private_channel", "mpim", "im"}
        if unknown:
            raise invalid_args(f"unknown types: {', '.join(sorted(unknown))}")
        exclude_archived = bool_arg(args, "exclude_archived")
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
        page, meta = paginate(chosen, args, 100, 1000)
        return {"channels": [self._channel_json(c) for c in page], "response_metadata": meta}

    def _conversations_members(self, args: JSON) -> JSON:
        channel = self._channel(args)
        page, meta = paginate(list(channel.members), args, 100, 1000)
        return {"members": page, "response_metadata": meta}

    def _conversations_open(self, args: JSON) -> JSON:
        if opt_str(args, "channel"):
            channel = self._channel(args)
            return {"channel": {"id": channel.id}}
        users = [u for u in (opt_str(args, "users") or "").split(",") if u]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_enough_users")  # multi-person DMs are not modelled
        if users[0] not in self.users or users[0] == self.bot_user_id:
            raise SlackError("user_not_found")
        channel = self._im_with(users[0])
        return {"channel": {"id": channel.id}, "already_open": True}

    def _conversations_join(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if channel.is_private or channel.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        self._require_unarchived(channel)
        if self.bot_user_id in channel.members:
            return {"channel": self._channel_json(channel), "warning": "already_in_channel"}
        channel.members.append(self.bot_user_id)
        self._system_message(channel, "channel_join", f"<@{self.bot_user_id}> has joined the channel")
        return {"channel": self._channel_json(channel)}

    def _conversations_invite(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if channel.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        self._require_unarchived(channel)
        self._require_member(channel)
        users = [u.strip() for u in (opt_str(args, "users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("no_user")
        if len(users) > 1000:
            raise SlackError("too_many_users")
        force = bool_arg(args, "force")
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
            raise SlackError(errors[0]["error"], errors=errors)
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
        topic = opt_str(args, "topic") or ""
        if len(topic) > MAX_TOPIC:
            raise SlackError("too_long")
        self._require_unarchived(channel)
        self._require_member(channel)
        channel.topic = topic
        channel.topic_set_by = self.bot_user_id
        channel.topic_set_at = int(time.time())
        self._system_message(channel, "channel_topic", f"set the channel topic: {topic}")
        return {"channel": self._channel_json(channel)}

    def _conversations_set_purpose(self, args: JSON) -> JSON:
        channel = self._channel(args)
        purpose = opt_str(args, "purpose") or ""
        if len(purpose) > MAX_PURPOSE:
            raise SlackError("too_long")
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
        name = opt_str(args, "name") or ""
        problem = channel_name_error(name)
        if problem is not None:
            raise SlackError(problem)
        if any(c.name == name for c in self.channels.values() if c is not channel and not c.is_im):
            raise SlackError("name_taken")
        if name != channel.name:
            channel.previous_names.append(channel.name)
            channel.name = name
            self._system_message(channel, "channel_name", f"renamed the channel to #{name}")
        return {"channel": self._channel_json(channel)}

    def _conversations_archive(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if channel.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise SlackError("already_archived")
        if channel.is_general:
            raise SlackError("cant_archive_general")
        self._require_member(channel)
        self._system_message(channel, "channel_archive", "archived the channel")
        channel.is_archived = True
        return {}

    def _conversations_unarchive(self, args: JSON) -> JSON:
        channel = self._channel(args)
        if not channel.is_archived:
            raise SlackError("not_archived")
        channel.is_archived = False
        self._system_message(channel, "channel_unarchive", "un-archived the channel")
        return {}

    def _listed(self, page: list[Message], args: JSON) -> list[JSON]:
        """Messages as history and replies list them: like Slack, without their metadata unless
        `include_all_metadata` is set."""
        listed = [self.message_json(m) for m in page]
        if not bool_arg(args, "include_all_metadata"):
            for item in listed:
                item.pop("metadata", None)
        return listed

    def _conversations_history(self, args: JSON) -> JSON:
        channel = self._channel(args)
        self._require_member(channel)
        latest = opt_str(args, "latest")
        oldest = opt_str(args, "oldest")
        inclusive = bool_arg(args, "inclusive")

        def in_range(msg: Message) -> bool:
            key = ts_key(msg.ts)
            if latest:
                bound = ts_key(latest)
                if key > bound or (key == bound and not inclusive):
                    return False
            if oldest:
                bound = ts_key(oldest)
                if key < bound or (key == bound and not inclusive):
                    return False
            return True

        top = [m for m in reversed(channel.messages) if (not m.is_reply or m.reply_broadcast) and in_range(m)]
        page, meta = paginate(top, args, 100, 999)
        result: JSON = {
            "messages": self._listed(page, args),
            "has_more": bool(meta["next_cursor"]),
            "pin_count": 0,
        }
        if meta["next_cursor"]:
            result["response_metadata"] = meta
        return result

    def _conversations_replies(self, args: JSON) -> JSON:
        channel = self._channel(args)
        self._require_member(channel)
        ts = req_str(args, "ts")
        msg = channel.message(ts)
        if msg is None:
            raise SlackError("thread_not_found")
        root_ts = msg.thread_ts if msg.is_reply and msg.thread_ts else msg.ts
        thread = [m for m in channel.messages if root_ts in (m.ts, m.thread_ts)]
        page, meta = paginate(thread, args, 1000, 1000)
        result: JSON = {
            "messages": self._listed(page, args),
            "has_more": bool(meta["next_cursor"]),
        }
        if meta["next_cursor"]:
            result["response_metadata"] = meta
        return result
